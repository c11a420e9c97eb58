"""Structures: geometry and MAP oracles. See :class:`Polytope` for the contract."""

from spigot.polytopes.base import Polytope
from spigot.polytopes.cube import Budget, UnitCube
from spigot.polytopes.simplex import ProductOfSimplices, Simplex

__all__ = ["Budget", "Polytope", "ProductOfSimplices", "Simplex", "UnitCube"]
