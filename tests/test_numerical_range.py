"""No silent wrong answer at any scale: masking constants, huge and tiny scores, offsets, dtypes.

Every case either returns a result that is feasible and agrees with an independent computation
(brute-force vertices, or the exact answer of the shifted problem: the projection onto a
polytope whose vertices all have the same sum, and its marginals, ignore a constant added to
every entry) or raises a clear error of spigot's (``ProjectionError``, ``NumericalError``) /
reports ``success=False``. The default suite runs a small sample; ``-m slow`` runs the sweep,
whose per-class counts are printed (``-s``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spigot.autodiff as ad
from reference import max_vertex_gap
from spigot import NumericalError, ProjectionError
from spigot.polytopes import (
    Arborescence,
    Budget,
    HeadSelection,
    LabeledArcs,
    ProjectiveTree,
    SemanticGraph,
    Simplex,
    SpanningTree,
    UnitCube,
)
from spigot.solvers.certificate import MAX_CERTIFIED_GAP
from spigot.solvers import available_solvers, get_solver, project_budget, project_simplex, solver_options

CLEAR_ERRORS = (ProjectionError, NumericalError)

# polytopes whose vertices all have the same sum (the projection ignores x + c * 1)
EQUAL_SUM = [
    ("simplex", Simplex(), (4,)),
    ("budget", Budget(2), (4,)),
    ("head-selection", HeadSelection(), (4, 4)),
    ("arborescence", Arborescence(), (4, 4)),
    ("projective", ProjectiveTree(), (4, 4)),
    ("spanning", SpanningTree(), (4, 4)),
]
GRAPHS = [
    ("head-selection", HeadSelection(), (4, 4)),
    ("projective", ProjectiveTree(), (4, 4)),
    ("arborescence", Arborescence(), (4, 4)),
    ("semantic", SemanticGraph(2, unique_labels=[0]), (3, 3, 2)),
    ("labeled-arcs", LabeledArcs(2), (3, 3, 2)),
]
ALL = EQUAL_SUM + [("unit-cube", UnitCube(), (4,)), ("budget-at-most", Budget(2, at_most=True), (4,))] + GRAPHS[3:]


def _solvers(polytope) -> list[str]:
    """The solvers that project onto ``polytope`` itself (``relaxed`` only where it is its own relaxation)."""
    names = []
    for name in available_solvers():
        if name == "relaxed" and polytope.relaxation() is not polytope:
            continue  # projects onto an outer polytope
        if get_solver(name).supports(polytope):
            names.append(name)
    return names


#: The solvers of the default suite's sample (the sweep runs every applicable one).
SAMPLE_SOLVERS = ("active-set", "frank-wolfe", "ad3", "exact")


def _sample(polytope) -> list[str]:
    return [name for name in _solvers(polytope) if name in SAMPLE_SOLVERS]


def _project(polytope, solver, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_solver(solver).run(polytope, x)


def _ignored(shape) -> np.ndarray:
    """True on the diagonal and column 0 of arc scores (broadcast over labels)."""
    n = shape[0]
    mask = np.eye(n, dtype=bool) | (np.arange(n)[None, :] == 0)
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - 2)), shape)


# ----------------------------------------------------------------------------- masking constants
def masking_case(polytope, shape, solver, seed: int, big: float = 1e9) -> str:
    """Return 'same', or raise: masked and zeroed ignored entries must give the same result."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    ignored = _ignored(shape)
    zeroed, masked = np.where(ignored, 0.0, x), x.copy()
    n = shape[0]
    masked[np.arange(n), np.arange(n)] = -big
    masked[:, 0] = big
    a, b = _project(polytope, solver, masked), _project(polytope, solver, zeroed)
    assert np.array_equal(a.x, b.x), f"{solver}: masking constants changed the projection"
    assert np.array_equal(a.success, b.success)
    assert np.array_equal(a.gap, b.gap)
    return "same"


@pytest.mark.parametrize("label, polytope, shape", GRAPHS, ids=[g[0] for g in GRAPHS])
def test_masking_constants_change_no_result(label, polytope, shape):
    for solver in _sample(polytope):
        masking_case(polytope, shape, solver, seed=0)


def test_masking_constants_change_no_marginal_or_map():
    x = np.random.default_rng(1).normal(size=(4, 4))
    masked = x.copy()
    masked[np.arange(4), np.arange(4)] = -1e9
    masked[:, 0] = 1e9
    zeroed = np.where(_ignored((4, 4)), 0.0, x)
    for polytope in (HeadSelection(), ProjectiveTree(), Arborescence()):
        assert np.array_equal(polytope.map(masked), polytope.map(zeroed))
        np.testing.assert_array_equal(polytope.marginals(masked), polytope.marginals(zeroed))


# ----------------------------------------------------------------------------- offsets
def _offset_instance(shape, offset: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(x, x + offset)`` with ``x + offset`` exact in float64 (x on a grid of the offset's ulp)."""
    ulp = abs(float(np.spacing(offset))) if offset else 0.0
    step = max(ulp, 0.125)
    x = step * rng.integers(-24, 25, size=shape).astype(np.float64)
    return x, x + offset


def offset_case(polytope, shape, solver, offset: float, seed: int) -> str:
    """'agrees' or 'clear-failure' (success False); raise on a silently wrong answer."""
    x, shifted = _offset_instance(shape, offset, np.random.default_rng(seed))
    reference = _project(polytope, "cvxpy" if get_solver("cvxpy").supports(polytope) else "active-set", x)
    result = _project(polytope, solver, shifted)
    if not bool(np.all(result.success)):
        return "clear-failure"
    # a certified gap bounds ||p - p*||^2: by the threshold's cap, every coordinate is within 0.032
    bound = np.sqrt(max(float(np.max(result.gap)), 0.0) + 1e-12) + 1e-6
    assert float(np.max(result.gap)) <= MAX_CERTIFIED_GAP
    assert np.max(np.abs(result.x - reference.x)) <= bound, f"{solver} at offset {offset}"
    return "agrees"


@pytest.mark.parametrize("label, polytope, shape", EQUAL_SUM, ids=[g[0] for g in EQUAL_SUM])
def test_offsets_leave_projections_unchanged(label, polytope, shape):
    outcomes = [offset_case(polytope, shape, s, 1e17, seed=0) for s in _sample(polytope)]
    assert "agrees" in outcomes


def test_closed_forms_at_large_offsets_and_scales():
    np.testing.assert_array_equal(project_simplex(np.array([1e17, 0.0])), [1.0, 0.0])
    x = np.array([1.5410, -0.2934, -2.1788, 0.5684])
    np.testing.assert_array_equal(project_budget(x * 1e17, 2), [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(project_budget(x + 1e17, 2, at_most=True), [0.5] * 4)
    arcs = np.array([[0, 1e17, 0], [0, 0, 0], [0, 0, 0.0]])
    np.testing.assert_array_equal(HeadSelection().project(arcs, "closed-form").x, [[0, 1, 0.5], [0, 0, 0.5], [0, 0, 0]])
    p = LabeledArcs(2).project(np.random.default_rng(0).normal(size=(3, 3, 2)) + 1e17, "closed-form").x
    assert np.all((p >= 0) & (p <= 1)) and np.all(p.sum(-1) <= 1 + 1e-12)


# ----------------------------------------------------------------------------- scales
def scale_case(polytope, shape, solver, exponent: int, seed: int) -> str:
    """Scores x * 2**exponent: feasible and certified by brute force, or a clear failure."""
    x = np.random.default_rng(seed).normal(size=shape) * 2.0**exponent
    result = _project(polytope, solver, x)
    if not bool(np.all(result.success)):
        return "clear-failure"
    vertices = polytope.vertices(shape)
    p = result.x
    assert np.all(np.isfinite(p)) and p.min() >= -1e-9 and p.max() <= 1 + 1e-9
    # the certificate by brute force, computed on r / |r|_inf so that nothing overflows:
    # <r, v - p> <= tol max(1, |r|_1) at every vertex (tol: the solver's, at least 1e-9)
    variables = polytope.variable_mask(shape)
    residual = (x if variables is None else np.where(variables, x, 0.0)) - p
    peak = float(np.abs(residual).max())
    if peak == 0.0:
        return "certified"
    scaled = residual / peak
    gap = max_vertex_gap(scaled + p, p, vertices)
    with np.errstate(over="ignore"):
        tol = max(float(getattr(get_solver(solver), "tol", 0.0)), 1e-9)
        allowed = tol * max(1.0 / peak, float(np.abs(scaled).sum()))
    assert gap <= allowed, f"{solver} at scale 2**{exponent}: scaled gap {gap}"
    return "certified"


@pytest.mark.parametrize("label, polytope, shape", ALL, ids=[g[0] for g in ALL])
def test_scaled_scores_are_certified(label, polytope, shape):
    for solver in _sample(polytope):
        for exponent in (-990, 990):
            scale_case(polytope, shape, solver, exponent, seed=1)


# ----------------------------------------------------------------------------- marginals
MARGINAL_POLYTOPES = [
    ("simplex", Simplex(), (4,), 1),
    ("budget", Budget(2), (4,), 2),
    ("head-selection", HeadSelection(), (4, 4), 3),
    ("arborescence", Arborescence(), (4, 4), 3),
    ("projective", ProjectiveTree(), (4, 4), 3),
]


def marginals_case(polytope, shape, total, kind: str, value: float, seed: int) -> str:
    """Marginals under an offset (equal to those of the unshifted scores) or a scale (feasible)."""
    rng = np.random.default_rng(seed)
    if kind == "offset":
        x, shifted = _offset_instance(shape, value, rng)
    else:
        x = rng.normal(size=shape)
        shifted = x * value
    try:
        mu = polytope.marginals(torch.from_numpy(shifted)).numpy()
    except NumericalError:
        return "clear-failure"
    assert np.all(np.isfinite(mu)) and mu.min() >= -1e-9 and mu.max() <= 1 + 1e-9
    assert abs(mu.sum() - total) <= 1e-6
    if kind == "offset":
        np.testing.assert_allclose(mu, polytope.marginals(torch.from_numpy(x)).numpy(), atol=1e-6)
    return "agrees"


@pytest.mark.parametrize("label, polytope, shape, total", MARGINAL_POLYTOPES, ids=[m[0] for m in MARGINAL_POLYTOPES])
def test_marginals_at_large_offsets_and_scales(label, polytope, shape, total):
    assert marginals_case(polytope, shape, total, "offset", 1e17, seed=0) == "agrees"
    marginals_case(polytope, shape, total, "scale", 1e300, seed=0)
    marginals_case(polytope, shape, total, "scale", 1e-300, seed=0)


@pytest.mark.parametrize("polytope", [Arborescence(), Arborescence(single_root=True), SpanningTree()], ids=repr)
def test_matrix_tree_marginals_reach_their_one_hot_limit(polytope):
    """At scale 1e30 the distribution sits on the MAP tree: the marginals are its vertex, not an error."""
    for seed in range(2):
        x = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 5, 5)) * 1e30).requires_grad_(True)
        mu = polytope.marginals(x)
        assert torch.equal(mu.detach(), polytope.map(x.detach()))
        mu.backward(torch.ones_like(mu))
        assert bool(torch.isfinite(x.grad).all())


def test_spigot_ce_and_eg_at_large_offsets():
    x = torch.from_numpy(np.random.default_rng(6).normal(size=(4,)) + 1e17).requires_grad_(True)
    for estimator in (ad.spigot_ce, ad.spigot_eg):
        out = estimator(x, Budget(2))
        assert abs(float(out.detach().sum()) - 2.0) < 1e-9 and float(out.detach().max()) <= 1.0
        out.backward(torch.ones(4, dtype=torch.float64))
        assert bool(torch.isfinite(x.grad).all())
        x.grad = None


@given(exponent=st.integers(-1000, 1000), seed=st.integers(0, 2**16))
def test_budget_marginals_any_scale(exponent, seed):
    marginals_case(Budget(2), (5,), 2, "scale", 2.0**exponent, seed)


# ----------------------------------------------------------------------------- dtypes
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def dtype_case(polytope, shape, dtype, seed: int) -> str:
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=shape)).to(dtype)
    wide = x.to(torch.float64)
    tol = {torch.float16: 2e-2, torch.bfloat16: 2e-2, torch.float32: 1e-5, torch.float64: 1e-9}[dtype]
    z = polytope.map(x)
    assert z.dtype == dtype and torch.equal(z.double(), polytope.map(wide))
    solver = "exact" if get_solver("exact").supports(polytope) else "active-set"
    result = _project(polytope, solver, x)
    assert result.x.dtype == dtype
    torch.testing.assert_close(result.x.double(), _project(polytope, solver, wide).x, atol=tol, rtol=0)
    if polytope.supports("marginals_batch"):
        mu = polytope.marginals(x)
        assert mu.dtype == dtype
        torch.testing.assert_close(mu.double(), polytope.marginals(wide), atol=tol, rtol=0)
    return "agrees"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_float_dtype(dtype):
    for _, polytope, shape in ALL:
        dtype_case(polytope, shape, dtype, seed=2)


def test_half_precision_through_estimators():
    x = torch.randn(4, 4).to(torch.bfloat16).requires_grad_(True)
    for estimator in (ad.spigot, ad.ste, ad.sparsemap, ad.marginals):
        out = estimator(x, Arborescence())
        assert out.dtype == torch.bfloat16
        (out * torch.randn(4, 4).to(torch.bfloat16)).sum().backward()
        assert x.grad.dtype == torch.bfloat16 and bool(torch.isfinite(x.grad).all())
        x.grad = None


# ----------------------------------------------------------------------------- gradients
GRADIENT_ESTIMATORS = ("ste", "ste_marginals", "marginals", "spigot_eg", "sparsemap", "perturbed", "imle")


def gradient_case(name: str, polytope, shape, scale: float, seed: int) -> str:
    """Incoming gradients up to 1e300: a finite gradient or a clear error."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    out = getattr(ad, name)(x, polytope)
    try:
        out.backward(torch.randn(shape, generator=gen, dtype=torch.float64) * scale)
    except CLEAR_ERRORS:
        return "clear-failure"
    assert bool(torch.isfinite(x.grad).all()), f"{name}: non-finite gradient at scale {scale}"
    return "finite"


@pytest.mark.parametrize("name", GRADIENT_ESTIMATORS)
def test_gradients_scaled_to_1e300(name):
    gradient_case(name, Arborescence(), (4, 4), 1e300, seed=3)


# ----------------------------------------------------------------------------- clear errors
def test_clear_errors_at_the_edges():
    assert project_budget(torch.zeros(2, 0), 2, at_most=True).shape == (2, 0)
    with pytest.raises(TypeError, match="unique_labels must be an iterable"):
        SemanticGraph(2, unique_labels=5)
    assert "args" not in solver_options("closed-form")
    reversed_rows = np.arange(5.0)[::-1]
    np.testing.assert_array_equal(Simplex().map(reversed_rows), [1, 0, 0, 0, 0])
    subnormal = np.random.default_rng(4).normal(size=(3, 3, 2)) * 1e-310
    assert bool(np.all(LabeledArcs(2).project(subnormal, "ad3").success))
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(4, 4)) + 1e6)
    assert torch.isfinite(ad.sparsemap(x, Arborescence())).all()


# ----------------------------------------------------------------------------- the sweep
def _sweep(label: str, cases) -> None:
    counts: dict[str, int] = {}
    for case in cases:
        outcome = case()
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"\nSWEEP {label}: {sum(counts.values())} cases, {counts}, 0 silently wrong")


@pytest.mark.slow
def test_sweep_masking_constants():
    _sweep("masking", [
        (lambda p=p, s=s, v=v, seed=seed, big=big: masking_case(p, s, v, seed, big))
        for _, p, s in GRAPHS for v in _solvers(p) for seed in range(3) for big in (1e6, 1e9, 1e15)
    ])


@pytest.mark.slow
def test_sweep_offsets():
    _sweep("offsets", [
        (lambda p=p, s=s, v=v, off=off, seed=seed: offset_case(p, s, v, off, seed))
        for _, p, s in EQUAL_SUM for v in _solvers(p) for off in (1e3, 1e9, 1e15, -1e17, 1e17) for seed in range(2)
    ])


@pytest.mark.slow
def test_sweep_scales():
    _sweep("scales", [
        (lambda p=p, s=s, v=v, e=e, seed=seed: scale_case(p, s, v, e, seed))
        for _, p, s in ALL for v in _solvers(p) for e in (-996, -500, -100, -30, 30, 100, 500, 996) for seed in range(2)
    ])


@pytest.mark.slow
def test_sweep_marginals():
    _sweep("marginals", [
        (lambda p=p, s=s, t=t, k=k, v=v, seed=seed: marginals_case(p, s, t, k, v, seed))
        for _, p, s, t in MARGINAL_POLYTOPES
        for k, v in [("offset", o) for o in (1e3, 1e9, 1e15, 1e17, -1e17)] + [("scale", 10.0**e) for e in (-300, -30, 30, 100, 300)]
        for seed in range(4)
    ])


@pytest.mark.slow
def test_sweep_dtypes():
    _sweep("dtypes", [
        (lambda p=p, s=s, d=d, seed=seed: dtype_case(p, s, d, seed))
        for _, p, s in ALL for d in DTYPES for seed in range(3)
    ])


@pytest.mark.slow
def test_sweep_gradients():
    _sweep("gradients", [
        (lambda n=n, p=p, s=s, g=g, seed=seed: gradient_case(n, p, s, g, seed))
        for n in GRADIENT_ESTIMATORS
        for p, s in ((Arborescence(), (4, 4)), (Budget(2), (4,)), (HeadSelection(), (4, 4)))
        for g in (1e100, 1e200, 1e300) for seed in range(2)
    ])
