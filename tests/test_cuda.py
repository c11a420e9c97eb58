"""Device discipline: on a CUDA device every polytope, solver and estimator gives the CPU result.

For every polytope (small instances, padded with ``lengths``), every registered solver that
supports it (the registry's own ``Solver.supports``), every estimator of ``ESTIMATORS`` and the
closed-form projection functions, the result computed from tensors on the target device equals,
to float tolerance, the result from the same inputs on the CPU -- input gradients included --
and comes back on the target device with the input's dtype (float32 and float64).

The target device comes from ``SPIGOT_TEST_DEVICE`` (default ``"cuda"``; the ``target_device``
fixture of ``conftest.py``). Every test here is marked ``cuda``: without a visible GPU they are
skipped with the reason shown, and ``SPIGOT_TEST_DEVICE=cpu`` runs them CPU against CPU so that
the comparisons themselves are exercised anywhere.

Combinations that cannot run (a solver whose ``supports`` refuses the polytope, an estimator that
needs marginals the polytope lacks) are not generated; :func:`test_every_polytope_solver_and_estimator_is_covered`
checks that each polytope, solver and estimator still appears in some test.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import numpy as np
import pytest
import torch

from polytope_cases import AgreeingSequence, ExactlyTwo
from spigot.autodiff import ESTIMATORS, make_estimator
from spigot.polytopes import (
    Arborescence,
    Budget,
    FactorGraphPolytope,
    HeadSelection,
    LabeledArcs,
    LocalPolytope,
    Polytope,
    ProductOfSimplices,
    ProjectiveTree,
    SemanticGraph,
    Simplex,
    SpanningTree,
    UnitCube,
)
from spigot.solvers import (
    ProjectionResult,
    available_solvers,
    certificate_gap,
    clip_project_labeled_arcs,
    get_solver,
    head_selection_residual,
    project_box,
    project_budget,
    project_labeled_arcs,
    project_product_of_simplices,
    project_simplex,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.filterwarnings("ignore:The problem has an expression with dimension greater than 2"),
]

HAS_AD3 = importlib.util.find_spec("ad3") is not None
NEEDS_AD3 = pytest.mark.skipif(not HAS_AD3, reason="needs the optional package ad3 (make install builds it)")

DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["float32", "float64"]


#: (id, polytope, event shape, lengths of a batch of three, whether it needs ad3)
POLYTOPES: list[tuple[str, Polytope, tuple[int, ...], list[int], bool]] = [
    ("simplex", Simplex(), (5,), [5, 2, 4], False),
    ("product", ProductOfSimplices(), (3, 3), [3, 1, 2], False),
    ("cube", UnitCube(), (4,), [4, 1, 3], False),
    ("budget", Budget(2), (5,), [5, 2, 4], False),
    ("budget-at-most", Budget(2, at_most=True), (5,), [5, 1, 4], False),
    ("user-exactly-two", ExactlyTwo(), (5,), [5, 2, 4], False),
    ("head-selection", HeadSelection(), (5, 5), [4, 1, 3], False),
    ("arborescence", Arborescence(), (5, 5), [4, 1, 3], False),
    ("arborescence-single-root", Arborescence(single_root=True), (5, 5), [4, 1, 3], False),
    ("projective", ProjectiveTree(), (5, 5), [4, 1, 3], False),
    ("projective-single-root", ProjectiveTree(single_root=True), (5, 5), [4, 1, 3], False),
    ("spanning-tree", SpanningTree(), (4, 4), [4, 1, 3], False),
    ("labeled-arcs", LabeledArcs(2), (3, 3, 2), [2, 1, 2], False),
    ("semantic-graph", SemanticGraph(2, unique_labels=[0]), (4, 4, 2), [3, 1, 2], False),
    ("factor-graph", AgreeingSequence(), (3, 4), [3, 1, 2], True),
    ("local-polytope", LocalPolytope(AgreeingSequence()), (3, 4), [3, 1, 2], True),
]
POLYTOPE_IDS = [case[0] for case in POLYTOPES]

#: Options that keep every solver fast on these small instances (same options on both devices).
SOLVER_OPTIONS: dict[str, dict[str, Any]] = {
    "frank-wolfe": {"max_iter": 200},
    "ad3-frank-wolfe": {"max_iter": 50},
}


def _polytope_params(case) -> Any:
    return pytest.param(case, id=case[0], marks=[NEEDS_AD3] if case[4] else [])


def _supported_solvers(polytope: Polytope) -> list[str]:
    return [name for name in available_solvers() if get_solver(name).supports(polytope)]


SOLVER_PAIRS = [
    pytest.param(case, name, id=f"{case[0]}-{name}", marks=[NEEDS_AD3] if case[4] or name == "ad3-frank-wolfe" else [])
    for case in POLYTOPES
    for name in _supported_solvers(case[1])
]


def _generator() -> torch.Generator:
    """A seeded CPU generator: noise is drawn on it, so both devices see the same samples."""
    return torch.Generator().manual_seed(7)


#: (id, estimator name, options factory); the stochastic ones draw their noise from a CPU generator.
ESTIMATOR_CONFIGS: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
    ("ste-i", "ste-i", dict),
    ("ste-s", "ste-s", dict),
    ("spigot", "spigot", dict),
    ("spigot-relaxed", "spigot", lambda: {"solver": "relaxed", "eta": 0.5, "threshold": 1.0}),
    ("spigot-ce", "spigot-ce", dict),
    ("spigot-ce-marginals", "spigot-ce", lambda: {"output": "marginals", "threshold": 1.0}),
    ("spigot-eg", "spigot-eg", dict),
    ("spigot-eg-marginals", "spigot-eg", lambda: {"output": "marginals", "eta": 0.5}),
    ("spigot-ce-relaxed", "spigot-ce-relaxed", dict),
    ("spigot-eg-relaxed", "spigot-eg-relaxed", lambda: {"eta": 0.5}),
    ("sparsemap", "sparsemap", dict),
    ("marginals", "marginals", dict),
    ("perturbed", "perturbed", lambda: {"n_samples": 8, "generator": _generator()}),
    ("imle", "imle", lambda: {"n_samples": 2, "generator": _generator()}),
    ("imle-gumbel", "imle", lambda: {"noise": "gumbel", "lambda_": 0.5, "generator": _generator()}),
]
NEEDS_MARGINALS = {"ste-s", "spigot-ce", "spigot-eg", "spigot-ce-relaxed", "spigot-eg-relaxed", "marginals"}
STOCHASTIC = {"perturbed", "imle"}

ESTIMATOR_PAIRS = [
    pytest.param(case, config, id=f"{case[0]}-{config[0]}", marks=[NEEDS_AD3] if case[4] else [])
    for case in POLYTOPES
    for config in ESTIMATOR_CONFIGS
    if config[1] not in NEEDS_MARGINALS or case[1].supports("marginals_batch")
]


# ----------------------------------------------------------------------------- helpers
def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    """float32 results may be computed in float32 on the device and in float64 on the CPU."""
    return {"atol": 1e-4, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-8, "rtol": 1e-7}


def _inputs(case, dtype: torch.dtype, scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A CPU batch of three instances ``(3, *event)`` in ``dtype`` and its CPU lengths."""
    _, _, shape, lengths, _ = case
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(scale * rng.normal(size=(3, *shape))).to(dtype)
    return x, torch.tensor(lengths)


def _assert_on(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None, what: str = "") -> None:
    assert isinstance(t, torch.Tensor), f"{what}: expected a tensor, got {type(t).__name__}"
    assert t.device == device, f"{what}: on {t.device}, expected {device}"
    if dtype is not None:
        assert t.dtype == dtype, f"{what}: dtype {t.dtype}, expected {dtype}"


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    torch.testing.assert_close(actual.cpu(), expected, **_tolerance(dtype), msg=lambda m: f"{what}: {m}")


def _padding_is_zero(t: torch.Tensor, polytope: Polytope, lengths: list[int], what: str) -> None:
    """Entries outside each instance's valid region are exactly 0."""
    event_shape = tuple(t.shape[1:])
    for i, n in enumerate(lengths):
        keep = torch.zeros(event_shape, dtype=torch.bool)
        keep[polytope.valid_slices(event_shape, n)] = True
        assert torch.all(t[i].cpu()[~keep] == 0), f"{what}: padded entries of instance {i} are not 0"


# ----------------------------------------------------------------------------- coverage
def test_every_polytope_solver_and_estimator_is_covered():
    """Each polytope meets some solver and estimator; each solver and estimator meets some polytope."""
    exported = {
        Simplex, ProductOfSimplices, UnitCube, Budget, HeadSelection, Arborescence, ProjectiveTree,
        SpanningTree, LabeledArcs, SemanticGraph, LocalPolytope,
    }
    assert exported <= {type(case[1]) for case in POLYTOPES}
    assert any(isinstance(case[1], FactorGraphPolytope) for case in POLYTOPES)
    solvers = {param.values[1] for param in SOLVER_PAIRS}
    assert solvers == set(available_solvers())
    assert {param.values[0][0] for param in SOLVER_PAIRS} == set(POLYTOPE_IDS)
    assert {config[1] for config in ESTIMATOR_CONFIGS} == set(ESTIMATORS)
    assert {param.values[0][0] for param in ESTIMATOR_PAIRS} == set(POLYTOPE_IDS)


# ----------------------------------------------------------------------------- polytopes
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", [_polytope_params(c) for c in POLYTOPES])
def test_map_and_marginals_match_the_cpu(case, dtype, target_device):
    _, polytope, _, lengths, _ = case
    x, lens = _inputs(case, dtype, scale=2.0)
    z_cpu = polytope.map(x, lens)
    z = polytope.map(x.to(target_device), lens.to(target_device))
    _assert_on(z, target_device, dtype, "map")
    assert torch.equal(z.cpu(), z_cpu), "map differs from the CPU's"
    _padding_is_zero(z, polytope, lengths, "map")
    # a single unbatched instance, CPU lengths with device scores
    _assert_on(polytope.map(x[0].to(target_device)), target_device, dtype, "map of one instance")
    assert torch.equal(polytope.map(x.to(target_device), lens).cpu(), z_cpu)
    if isinstance(polytope, FactorGraphPolytope):
        exact = polytope.map_ad3(x.to(target_device), lens.to(target_device))
        _assert_on(exact, target_device, dtype, "map_ad3")
        assert torch.equal(exact.cpu(), polytope.map_ad3(x, lens))
    if not polytope.supports("marginals_batch"):
        return
    g = torch.from_numpy(np.random.default_rng(1).normal(size=tuple(x.shape))).to(dtype)
    results = []
    for device in (torch.device("cpu"), target_device):
        leaf = x.to(device).requires_grad_(True)
        mu = polytope.marginals(leaf, lens.to(device))
        _assert_on(mu, device, dtype, "marginals")
        (grad,) = torch.autograd.grad(mu, leaf, g.to(device))
        _assert_on(grad, device, dtype, "gradient of the marginals")
        results.append((mu.detach(), grad))
    (mu_cpu, grad_cpu), (mu, grad) = results
    _close(mu, mu_cpu, dtype, "marginals")
    _close(grad, grad_cpu, dtype, "gradient of the marginals")
    _padding_is_zero(mu, polytope, lengths, "marginals")
    _padding_is_zero(grad, polytope, lengths, "gradient of the marginals")


# ----------------------------------------------------------------------------- solvers
def _check_result(result: ProjectionResult, reference: ProjectionResult, device, dtype, what: str) -> None:
    _assert_on(result.x, device, dtype, f"{what} x")
    _close(result.x, reference.x, dtype, f"{what} x")
    for field in ("gap", "nit", "success", "status"):
        _assert_on(getattr(result, field), device, getattr(reference, field).dtype, f"{what} {field}")
    assert result.gap.shape == reference.gap.shape == (3,)
    torch.testing.assert_close(result.gap.cpu(), reference.gap, atol=_tolerance(dtype)["atol"], rtol=0)
    assert torch.equal(result.success.cpu(), reference.success), f"{what}: success differs from the CPU's"
    assert (result.active_set is None) == (reference.active_set is None)
    if result.active_set is None:
        return
    assert len(result.active_set) == len(result.weights) == 3
    for i, (vertices, weights) in enumerate(zip(result.active_set, result.weights)):
        _assert_on(vertices, device, dtype, f"{what} active_set[{i}]")
        _assert_on(weights, device, torch.float64, f"{what} weights[{i}]")
        # the active set certifies x: a convex combination of its vertices
        combination = torch.tensordot(weights, vertices.to(torch.float64), dims=1)
        _close(combination.to(dtype), result.x[i].cpu(), dtype, f"{what} active set of instance {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("case", "solver_name"), SOLVER_PAIRS)
def test_projection_matches_the_cpu(case, solver_name, dtype, target_device):
    _, polytope, _, lengths, _ = case
    x, lens = _inputs(case, dtype, scale=2.0, seed=3)
    solver = get_solver(solver_name, **SOLVER_OPTIONS.get(solver_name, {}))  # one instance: caches shared
    reference = solver.run(polytope, x, lens)
    result = solver.run(polytope, x.to(target_device), lens.to(target_device))
    _check_result(result, reference, target_device, dtype, solver_name)
    _padding_is_zero(result.x, polytope, lengths, f"{solver_name} x")
    # the certificate, recomputed by the public function on the device
    p64 = result.x.to(torch.float64)
    gap = certificate_gap(polytope, x.to(target_device), p64, lens)
    _assert_on(gap, target_device, torch.float64, "certificate_gap")
    torch.testing.assert_close(gap.cpu(), certificate_gap(polytope, x, p64.cpu(), lens), atol=1e-8, rtol=0)
    if result.active_set is not None and solver.warm_start:
        # warm start from the device result (its active sets), and from points on the device
        warm = solver.run(polytope, x.to(target_device), lens.to(target_device), init=result)
        _check_result(warm, solver.run(polytope, x, lens, init=reference), target_device, dtype, "warm start")
        points = solver.run(polytope, x.to(target_device), lens, init=result.x)
        _check_result(points, solver.run(polytope, x, lens, init=reference.x), target_device, dtype, "init=x")


#: Tensor methods through which data can leave (or be moved between) devices.
_TRANSFERS = ("cpu", "to", "numpy", "tolist", "item")


def _count_transfers(monkeypatch, run: Callable[[], Any]) -> int:
    calls = []
    for method in _TRANSFERS:
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            calls.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    try:
        run()
    finally:
        monkeypatch.undo()
    return len(calls)


def _transfer_scenarios(device: torch.device) -> dict[str, Callable[[torch.Tensor, torch.Tensor], Any]]:
    tree = Arborescence()

    def backward(module, x, n):
        leaf = x.to(device).requires_grad_(True)
        out = module(leaf, lengths=n.to(device))
        torch.autograd.grad(out, leaf, torch.ones_like(out))

    active_set = get_solver("active-set")
    return {
        "map (compiled tree kernel)": lambda x, n: tree.map(x.to(device), n.to(device)),
        "map (map_one loop)": lambda x, n: ExactlyTwo().map(x.to(device)[:, 0], n.to(device)),
        "marginals": lambda x, n: tree.marginals(x.to(device), n.to(device)),
        "active-set projection": lambda x, n: active_set.run(tree, x.to(device), n.to(device)),
        "warm-started projection": lambda x, n: active_set.run(
            tree, x.to(device), n.to(device), init=active_set.run(tree, x.to(device), n.to(device))
        ),
        "cvxpy projection": lambda x, n: get_solver("cvxpy").run(tree, x.to(device), n.to(device)),
        "spigot": lambda x, n: backward(make_estimator("spigot", tree), x, n),
        "sparsemap": lambda x, n: backward(make_estimator("sparsemap", tree), x, n),
    }


@pytest.mark.parametrize("scenario", list(_transfer_scenarios(torch.device("cpu"))))
def test_host_transfers_do_not_grow_with_the_batch(scenario, target_device, monkeypatch):
    """Work that runs on the CPU moves a batch to host memory once, never once per instance."""
    run = _transfer_scenarios(target_device)[scenario]
    counts = []
    for batch in (2, 6):
        x = torch.from_numpy(np.random.default_rng(batch).normal(size=(batch, 5, 5)))
        lengths = torch.tensor([4, 2, 3, 4, 1, 3][:batch])
        run(x, lengths)  # warm caches (compilation, cvxpy problems) before counting
        counts.append(_count_transfers(monkeypatch, lambda: run(x, lengths)))
    assert counts[0] == counts[1], f"{scenario}: {counts[0]} transfers for 2 instances, {counts[1]} for 6"


def test_single_instance_projection_stays_on_the_device(target_device):
    x = torch.randn(5, dtype=torch.float32, device=target_device)
    result = Simplex().project(x, solver="active-set")
    _assert_on(result.x, target_device, torch.float32, "x")
    assert result.gap.shape == () and result.gap.device == target_device
    assert result.active_set[0].device == target_device


# ----------------------------------------------------------------------------- estimators
def _forward_backward(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, lengths: torch.Tensor):
    leaf = x.detach().clone().requires_grad_(True)
    if getattr(module, "needs_downstream", False):  # a loss whose gradient depends on the point: g * z
        out = module(leaf, lengths=lengths, downstream=lambda z: 0.5 * (g * z * z).sum())
        (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
        return out.detach(), grad
    out = module(leaf, lengths=lengths)
    (grad,) = torch.autograd.grad(out, leaf, g)
    return out.detach(), grad


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("case", "config"), ESTIMATOR_PAIRS)
def test_estimator_matches_the_cpu(case, config, dtype, target_device):
    _, polytope, _, lengths, _ = case
    _, name, options = config
    x, lens = _inputs(case, dtype, seed=5)
    g = torch.from_numpy(np.random.default_rng(6).normal(size=tuple(x.shape))).to(dtype)
    module = make_estimator(name, polytope, **options())
    out_cpu, grad_cpu = _forward_backward(module, x, g, lens)
    if name in STOCHASTIC:  # the same seeded noise again
        module = make_estimator(name, polytope, **options())
    out, grad = _forward_backward(module, x.to(target_device), g.to(target_device), lens.to(target_device))
    _assert_on(out, target_device, dtype, f"{name} output")
    _assert_on(grad, target_device, dtype, f"{name} gradient")
    _close(out, out_cpu, dtype, f"{name} output")
    _close(grad, grad_cpu, dtype, f"{name} gradient")
    _padding_is_zero(out, polytope, lengths, f"{name} output")
    _padding_is_zero(grad, polytope, lengths, f"{name} gradient")
    if name in STOCHASTIC:  # without a generator the noise is drawn on the device itself
        unseeded = {key: value for key, value in options().items() if key != "generator"}
        out, grad = _forward_backward(
            make_estimator(name, polytope, **unseeded), x.to(target_device), g.to(target_device), lens
        )
        _assert_on(out, target_device, dtype, f"{name} output (device noise)")
        _assert_on(grad, target_device, dtype, f"{name} gradient (device noise)")


# ----------------------------------------------------------------------------- closed forms
_NOT_SECOND = torch.tensor([True, False, True, True, True, True])

#: (id, function of (x, lengths), instance shape, lengths of a batch of three)
CLOSED_FORMS: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[int, ...], list[int]]] = [
    ("simplex", lambda x, n: project_simplex(x, n), (6,), [6, 1, 4]),
    ("simplex-unpadded", lambda x, n: project_simplex(x), (6,), [6, 6, 6]),
    ("simplex-mask", lambda x, n: project_simplex(x, n, mask=_NOT_SECOND.to(x.device)), (6,), [6, 2, 5]),
    ("simplex-cpu-mask", lambda x, n: project_simplex(x, n, mask=_NOT_SECOND), (6,), [6, 2, 5]),
    ("product-of-simplices", lambda x, n: project_product_of_simplices(x, n), (3, 2), [3, 1, 2]),
    ("box", lambda x, n: project_box(x, n), (6,), [6, 1, 4]),
    ("budget", lambda x, n: project_budget(x, 2, lengths=n), (6,), [6, 2, 4]),
    ("budget-unpadded", lambda x, n: project_budget(x, 2), (6,), [6, 6, 6]),
    ("budget-at-most", lambda x, n: project_budget(x, 3, at_most=True, lengths=n), (6,), [6, 1, 4]),
    ("labeled-arcs", lambda x, n: project_labeled_arcs(x, n), (3, 3, 2), [2, 1, 2]),
    ("clip-project-labeled-arcs", lambda x, n: clip_project_labeled_arcs(x, n), (3, 3, 2), [2, 1, 2]),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("form", CLOSED_FORMS, ids=[f[0] for f in CLOSED_FORMS])
def test_closed_form_projection_matches_the_cpu(form, dtype, target_device):
    _, fn, shape, lengths = form
    x = torch.from_numpy(np.random.default_rng(9).normal(scale=0.8, size=(3, *shape)) + 0.3).to(dtype)
    g = torch.from_numpy(np.random.default_rng(10).normal(size=(3, *shape))).to(dtype)
    lens = torch.tensor(lengths)
    results = []
    for device in (torch.device("cpu"), target_device):
        leaf = x.to(device).requires_grad_(True)
        p = fn(leaf, lens.to(device))
        _assert_on(p, device, dtype, "projection")
        (grad,) = torch.autograd.grad(p, leaf, g.to(device))
        _assert_on(grad, device, dtype, "gradient")
        results.append((p.detach(), grad))
    (p_cpu, grad_cpu), (p, grad) = results
    _close(p, p_cpu, dtype, "projection")
    _close(grad, grad_cpu, dtype, "gradient")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_head_selection_residual_matches_the_cpu(dtype, target_device):
    """The residual at a step: the compiled pass on the CPU, torch's expression on the device."""
    rng = np.random.default_rng(11)
    point = torch.from_numpy(rng.normal(size=(3, 5, 5))).to(dtype)
    direction = torch.from_numpy(rng.normal(size=(3, 5, 5))).to(dtype)
    sizes = torch.from_numpy(rng.uniform(0.0, 2.0, size=3))
    lens = torch.tensor([4, 1, 3])
    cpu = head_selection_residual(point, direction, sizes, lens)
    on_device = head_selection_residual(
        point.to(target_device), direction.to(target_device), sizes, lens.to(target_device)
    )
    _assert_on(on_device, target_device, dtype, "residual")
    _close(on_device, cpu, dtype, "residual")
