"""Structures: geometry and MAP oracles. See :class:`Polytope` for the contract."""

from spigot.polytopes._ad3 import Ad3Options
from spigot.polytopes.base import CompiledOracle, Polytope
from spigot.polytopes.cube import Budget, UnitCube
from spigot.polytopes.factor_graph import FactorGraphPolytope, LocalPolytope
from spigot.polytopes.factors import FactorGraph
from spigot.polytopes.matchings import BipartiteMatchings
from spigot.polytopes.permutations import Permutations
from spigot.polytopes.semantic_graph import LabeledArcs, SemanticGraph
from spigot.polytopes.simplex import ProductOfSimplices, Simplex
from spigot.polytopes.trees import Arborescence, HeadSelection, ProjectiveTree, SpanningTree

__all__ = [
    "Ad3Options",
    "Arborescence",
    "BipartiteMatchings",
    "Budget",
    "CompiledOracle",
    "FactorGraph",
    "FactorGraphPolytope",
    "HeadSelection",
    "LabeledArcs",
    "LocalPolytope",
    "Permutations",
    "Polytope",
    "ProductOfSimplices",
    "ProjectiveTree",
    "SemanticGraph",
    "Simplex",
    "SpanningTree",
    "UnitCube",
]
