"""The closed-form projections off the CPU: the sort-based simplex path and host synchronisation.

There is no GPU in this test suite, so the device path is checked on the CPU: the sort-based
simplex projection (what every non-CPU tensor uses) is called on CPU tensors and compared with
the compiled CPU kernel; and the absence of host synchronisation is checked on PyTorch's
``meta`` device, where tensors have no values (any ``.item()``, ``bool(tensor)``, ``.tolist()``,
``torch.equal``, ``.cpu()`` or data-dependent shape raises), and by counting the value reads
(``aten._local_scalar_dense``) that a validated call makes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from spigot.solvers import project_box, project_budget, project_product_of_simplices, project_simplex
from spigot.projections import _cpu_projection, _prepare, _SimplexProjection, _sorted_projection

#: Operations that read tensor values back to the host (a device synchronisation on a GPU).
HOST_READS = {"_local_scalar_dense", "equal", "is_nonzero", "nonzero", "masked_select", "item"}


def random_rows(rng: np.random.Generator, rows: int, width: int, dtype: torch.dtype):
    """Rows at mixed scales with ties, a random mask of valid entries, and a few empty rows."""
    x = rng.normal(size=(rows, width)) * rng.choice([0.01, 1.0, 30.0], size=(rows, 1))
    ties = rng.random((rows, width)) < 0.2
    x[ties] = np.round(x[ties], 1)  # repeated values, some of them on the threshold
    mask = rng.random((rows, width)) < 0.7
    mask[:3] = False
    mask[3:6] = True
    return torch.from_numpy(x).to(dtype), torch.from_numpy(mask)


@pytest.mark.parametrize("width", [1, 2, 7, 51, 1000])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sorted_path_matches_the_compiled_kernel(width, dtype):
    rng = np.random.default_rng(width)
    x, mask = random_rows(rng, 200, width, dtype)
    for m in (mask, None):
        expected = _cpu_projection(x, m)
        got = _sorted_projection(x, m)
        assert got.dtype == dtype
        if dtype == torch.float64:
            torch.testing.assert_close(got, expected, rtol=0.0, atol=1e-12)
        else:  # the compiled kernel computes in float64 then rounds; the sort path stays in float32
            torch.testing.assert_close(got, expected)
        if m is not None:
            assert (got[~m] == 0).all()
            assert (got[:3] == 0).all()  # rows without a valid entry
        sums = got.double().sum(dim=-1)
        nonempty = m.any(dim=-1) if m is not None else slice(None)
        tolerance = 1e-4 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(sums[nonempty], torch.ones_like(sums[nonempty]), rtol=0.0, atol=tolerance)


def test_sorted_path_with_lengths_and_products_of_simplices():
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.normal(size=(5, 6, 9)) * 3.0)
    lengths = torch.tensor([6, 1, 3, 4, 2])
    tensor, _, mask = _prepare(x, lengths, -2, "x", True)
    sorted_p = _SimplexProjection.apply(tensor, mask, True)
    torch.testing.assert_close(sorted_p, project_product_of_simplices(x, lengths), rtol=0.0, atol=1e-12)
    row_lengths = torch.from_numpy(rng.integers(1, 10, size=(5, 6)))
    tensor, _, mask = _prepare(x, row_lengths, -1, "x", True)
    torch.testing.assert_close(_SimplexProjection.apply(tensor, mask, True), project_simplex(x, row_lengths), rtol=0.0, atol=1e-12)


def test_sorted_path_in_half_precision_computes_in_float32():
    x = torch.randn(64, 40, dtype=torch.float16) * 3
    got = _sorted_projection(x, None)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got, _cpu_projection(x, None))


def test_sorted_path_gradients_match_the_compiled_path():
    rng = np.random.default_rng(3)
    x, mask = random_rows(rng, 12, 9, torch.float64)
    g = torch.randn(12, 9, dtype=torch.float64)
    grads = []
    for sort in (False, True):
        leaf = x.clone().requires_grad_(True)
        _SimplexProjection.apply(leaf, mask, sort).backward(g)
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0.0, atol=1e-12)
    leaf = (torch.randn(4, 7, dtype=torch.float64) * 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _SimplexProjection.apply(t, mask[3:7, :7], True), (leaf,))


PROJECTIONS = {
    "simplex": lambda x, n, v: project_simplex(x, n, validate=v),
    "simplex-mask": lambda x, n, v: project_simplex(x, n, mask=torch.ones_like(x, dtype=torch.bool), validate=v),
    "product": lambda x, n, v: project_product_of_simplices(x[..., None].expand(*x.shape, 3), n, validate=v),
    "box": lambda x, n, v: project_box(x, n, validate=v),
    "budget": lambda x, n, v: project_budget(x, 2, lengths=n, validate=v),
    "budget-at-most": lambda x, n, v: project_budget(x, 2, at_most=True, lengths=n, validate=v),
}


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_unvalidated_projections_never_read_values_on_a_device(name, with_lengths):
    """On the meta device any host read raises, so a clean forward+backward proves there is none."""
    x = torch.randn(4, 7, device="meta", requires_grad=True)
    lengths = torch.tensor([7, 3, 2, 5], device="meta") if with_lengths else None
    p = PROJECTIONS[name](x, lengths, False)
    assert p.device.type == "meta"
    p.backward(torch.ones_like(p))
    assert x.grad is not None and x.grad.device.type == "meta"


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_validation_reads_values_on_a_device(name):
    x = torch.randn(4, 7, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        PROJECTIONS[name](x, None, True)


class HostReads(TorchDispatchMode):
    """Counts the aten operations that read values back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_READS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["box", "budget", "budget-at-most"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_validation_is_one_host_read(name, with_lengths):
    """A validated call that passes its checks reads one flag; an unvalidated call reads none."""
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 3, 2, 5]) if with_lengths else None
    for validate, expected in ((True, ["_local_scalar_dense"]), (False, [])):
        with HostReads() as mode:
            p = PROJECTIONS[name](x, lengths, validate)
            p.backward(torch.ones_like(p))
        assert mode.reads == expected, (validate, mode.reads)


def test_validation_is_one_host_read_on_the_sorted_simplex_path():
    x = torch.randn(4, 7, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 2, 5])
    for validate, expected in ((True, ["_local_scalar_dense"]), (False, [])):
        with HostReads() as mode:
            tensor, _, mask = _prepare(x, lengths, -1, "x", validate)
            leaf = tensor.clone().requires_grad_(True)
            _SimplexProjection.apply(leaf, mask, True).sum().backward()
        assert mode.reads == expected, (validate, mode.reads)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: project_simplex(torch.tensor([[1.0, float("nan")]])), "x contains NaN"),
        (lambda: project_simplex(torch.ones(2, 3), torch.tensor([0, 2])), r"lengths must lie in \[1, 3\]"),
        (lambda: project_simplex(torch.ones(2, 3), torch.tensor([1, 4])), r"lengths must lie in \[1, 3\]"),
        (lambda: project_budget(torch.ones(2, 3), 2, lengths=torch.tensor([3, 1])), "at least k=2 valid entries"),
        (lambda: project_budget(torch.ones(2, 3), 4), "at least k=4 valid entries"),
        (lambda: project_box(torch.full((2, 3), 1e38) * torch.tensor([1.0, 1.0, float("inf")])), "x contains infinite"),
    ],
)
def test_failed_validation_still_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_validation_accepts_finite_entries_whose_sum_overflows():
    x = torch.full((1, 4), 3e38, dtype=torch.float32)
    assert torch.isinf(x.sum())
    assert torch.isfinite(project_box(x)).all()


def test_padding_never_leaks_into_the_output_without_validation():
    x = torch.tensor([[0.3, 0.2, float("inf"), float("nan")]])
    lengths = torch.tensor([2])
    for project in (
        lambda t: project_simplex(t, lengths, validate=False),
        lambda t: _SimplexProjection.apply(t, torch.arange(4) < 2, True),
        lambda t: project_box(t, lengths, validate=False),
        lambda t: project_budget(t, 1, lengths=lengths, validate=False),
        lambda t: project_budget(t, 1, at_most=True, lengths=lengths, validate=False),
    ):
        p = project(x)
        assert torch.isfinite(p).all() and (p[0, 2:] == 0).all()
