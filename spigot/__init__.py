"""spigot-toolkit: backpropagating through structured argmax.

The library has three layers, each a subpackage:

- :mod:`spigot.polytopes` -- structures: the convex hull of a finite set of 0/1 vertices and its
  MAP oracle ``argmax_{z in Z} <s, z>``;
- :mod:`spigot.solvers` -- Euclidean projection algorithms onto those polytopes, each returning a
  certified :class:`~spigot.solvers.ProjectionResult`;
- :mod:`spigot.autodiff` -- torch autograd estimators for the argmax, SPIGOT first among them.
"""

from spigot.errors import IncompatibleSolver, NumericalError, ProjectionError, UnsupportedOperation
from spigot.autodiff import (
    ESTIMATORS,
    IMLE,
    SPIGOT,
    Marginals,
    PerturbedMaximizer,
    SparseMAP,
    SpigotCE,
    SpigotEG,
    StraightThrough,
    StraightThroughMarginals,
    imle,
    make_estimator,
    perturbed,
    sparsemap,
    spigot,
    spigot_ce,
    spigot_eg,
    ste,
    ste_marginals,
)
from spigot.polytopes import (
    Arborescence,
    BipartiteMatchings,
    Budget,
    FactorGraph,
    FactorGraphPolytope,
    HeadSelection,
    LabeledArcs,
    LocalPolytope,
    Permutations,
    Polytope,
    ProductOfSimplices,
    ProjectiveTree,
    SemanticGraph,
    Simplex,
    SpanningTree,
    UnitCube,
)
from spigot.solvers import ProjectionResult, available_solvers, get_solver

__version__ = "0.1.0"

__all__ = [
    "Arborescence",
    "BipartiteMatchings",
    "Budget",
    "ESTIMATORS",
    "FactorGraph",
    "FactorGraphPolytope",
    "HeadSelection",
    "IMLE",
    "IncompatibleSolver",
    "LabeledArcs",
    "LocalPolytope",
    "Marginals",
    "NumericalError",
    "Permutations",
    "PerturbedMaximizer",
    "Polytope",
    "ProductOfSimplices",
    "ProjectionError",
    "ProjectionResult",
    "ProjectiveTree",
    "SPIGOT",
    "SemanticGraph",
    "Simplex",
    "SpanningTree",
    "SparseMAP",
    "SpigotCE",
    "SpigotEG",
    "StraightThrough",
    "StraightThroughMarginals",
    "UnitCube",
    "UnsupportedOperation",
    "available_solvers",
    "get_solver",
    "imle",
    "make_estimator",
    "perturbed",
    "sparsemap",
    "spigot",
    "spigot_ce",
    "spigot_eg",
    "ste",
    "ste_marginals",
]
