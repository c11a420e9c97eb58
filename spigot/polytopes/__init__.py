"""Structures: geometry and MAP oracles. See :class:`Polytope` for the contract."""

from spigot.polytopes.base import Polytope
from spigot.polytopes.cube import Budget, UnitCube
from spigot.polytopes.simplex import ProductOfSimplices, Simplex
from spigot.polytopes.trees import Arborescence, HeadSelection, ProjectiveTree, SpanningTree

__all__ = [
    "Arborescence",
    "Budget",
    "HeadSelection",
    "Polytope",
    "ProductOfSimplices",
    "ProjectiveTree",
    "Simplex",
    "SpanningTree",
    "UnitCube",
]
