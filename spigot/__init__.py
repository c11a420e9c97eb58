"""spigot-toolkit: backpropagating through structured argmax.

The library has three layers, each a subpackage:

- :mod:`spigot.polytopes` -- structures: the convex hull of a finite set of 0/1 vertices and its
  MAP oracle ``argmax_{z in Z} <s, z>``;
- :mod:`spigot.solvers` -- Euclidean projection algorithms onto those polytopes, each returning a
  certified :class:`~spigot.solvers.ProjectionResult`;
- :mod:`spigot.autodiff` -- torch autograd estimators for the argmax, SPIGOT first among them.
"""

from spigot.errors import ProjectionError, UnsupportedOperation
from spigot.autodiff import SPIGOT, StraightThrough, spigot, ste
from spigot.polytopes import (
    Budget,
    FactorGraph,
    FactorGraphPolytope,
    LabeledArcs,
    LocalPolytope,
    Polytope,
    ProductOfSimplices,
    SemanticGraph,
    Simplex,
    UnitCube,
)
from spigot.solvers import ProjectionResult, available_solvers, get_solver

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "FactorGraph",
    "FactorGraphPolytope",
    "LabeledArcs",
    "LocalPolytope",
    "Polytope",
    "ProductOfSimplices",
    "ProjectionError",
    "ProjectionResult",
    "SPIGOT",
    "SemanticGraph",
    "Simplex",
    "StraightThrough",
    "UnitCube",
    "UnsupportedOperation",
    "available_solvers",
    "get_solver",
    "spigot",
    "ste",
]
