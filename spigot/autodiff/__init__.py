"""Torch estimators for the gradient of a structured argmax, functional and nn.Module forms.

=====================  =======================  ======================================================================
name                   forward                  backward (``g = dL/d output``)
=====================  =======================  ======================================================================
``ste-i``              ``map(s)``               ``g``
``ste-s``              ``map(s)``               ``J_mu(s)^T g`` (marginals' Jacobian)
``spigot``             ``map(s)``               ``z - Proj_P(z - eta g)``
``spigot-ce``          ``map(s)`` or ``mu(s)``  ``mu(s) - Proj_P(mu(s) - eta g)``
``spigot-eg``          ``map(s)`` or ``mu(s)``  ``mu(s) - mu(s - eta g)``
``spigot-ce-relaxed``  ``map(s)``               ``mu(s) - Proj_P(mu(s) - eta gamma)``, ``gamma = dL/dmu`` at ``mu(s)``
``spigot-eg-relaxed``  ``map(s)``               ``mu(s) - mu(s - eta gamma)``, ``gamma`` as above
``sparsemap``          ``Proj_P(s)``            Jacobian of the projection, from its active set
``marginals``          ``mu(s)``                autograd through the marginals
``perturbed``          ``E[map(s + sigma Z)]``  ``E[<map(s + sigma Z), g> Z] / sigma`` (Monte Carlo)
``imle``               ``map(s + eps)``         ``map(s + eps) - map(s - lambda g + eps)``
=====================  =======================  ======================================================================

:data:`ESTIMATORS` maps these names to the nn.Module classes; :func:`make_estimator` builds
one by name. The ``-relaxed`` estimators (Mihaylova, Niculae and Martins 2020) take the gradient
at the relaxed point ``mu(s)`` through a second decoder pass: their call takes
``downstream=`` (``structure -> scalar loss``), see :mod:`spigot.autodiff.relaxed_point`.
"""

from spigot.autodiff.implicit_mle import IMLE, imle
from spigot.autodiff.perturbations import PerturbedMaximizer, perturbed
from spigot.autodiff.pulled_back import SpigotCE, SpigotEG, spigot_ce, spigot_eg
from spigot.autodiff.relaxed_point import SpigotCERelaxed, SpigotEGRelaxed, spigot_ce_relaxed, spigot_eg_relaxed
from spigot.autodiff.registry import ESTIMATORS, available_estimators, estimator_options, make_estimator
from spigot.autodiff.sparsemap_layer import SparseMAP, sparsemap
from spigot.autodiff.spigot_layer import SPIGOT, spigot
from spigot.autodiff.straight_through import StraightThrough, StraightThroughMarginals, ste, ste_marginals
from spigot.autodiff.structured_attention import Marginals, marginals

__all__ = [
    "ESTIMATORS",
    "IMLE",
    "Marginals",
    "PerturbedMaximizer",
    "SPIGOT",
    "SparseMAP",
    "SpigotCE",
    "SpigotCERelaxed",
    "SpigotEG",
    "SpigotEGRelaxed",
    "StraightThrough",
    "StraightThroughMarginals",
    "available_estimators",
    "estimator_options",
    "imle",
    "make_estimator",
    "marginals",
    "perturbed",
    "sparsemap",
    "spigot",
    "spigot_ce",
    "spigot_ce_relaxed",
    "spigot_eg",
    "spigot_eg_relaxed",
    "ste",
    "ste_marginals",
]
