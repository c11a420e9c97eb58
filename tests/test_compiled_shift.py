"""``as_batch``'s compiled shift-and-mask gives, bit for bit, the torch expression it stands for.

On CPU tensors outside autograd, ``as_batch`` subtracts each instance's largest variable and
zeroes the other entries in one compiled pass (``spigot._batch_kernel``); a tensor that
requires grad (or one on another device) takes the torch expression. Both must agree at every
scale, with padding and with the polytope's variable masks.
"""

from __future__ import annotations

import pytest
import torch

from spigot._batch import as_batch
from spigot.polytopes import Arborescence, Simplex, SpanningTree


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "polytope, shape, lengths",
    [
        (Arborescence(), (5, 7, 7), [6, 3, 1, 6, 2]),
        (Arborescence(single_root=True), (4, 7, 7), None),
        (SpanningTree(), (3, 6, 6), [6, 2, 4]),
        (Simplex(), (6, 9), [9, 1, 3, 4, 5, 9]),
        (Simplex(), (2, 5), None),
    ],
)
@pytest.mark.parametrize("offset", [0.0, 1e7, -1e30])
def test_compiled_shift_is_bit_for_bit_the_torch_expression(rng, dtype, polytope, shape, lengths, offset):
    x = torch.from_numpy(rng.normal(size=shape) * 10.0 + offset).to(dtype)
    lens = None if lengths is None else torch.tensor(lengths)
    compiled = as_batch(polytope, x, lens)  # no autograd: the compiled pass
    reference = as_batch(polytope, x.clone().requires_grad_(True), lens)  # the torch expression
    assert compiled.values.dtype == dtype
    assert torch.equal(compiled.values, reference.values.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("polytope, shape", [(Arborescence(), (4, 6, 6)), (SpanningTree(), (3, 5, 5))])
def test_compiled_masking_is_bit_for_bit_masked_fill(rng, dtype, polytope, shape):
    """``center=False`` (the MAP-only callers) masks the entries that are not variables, compiled."""
    x = torch.from_numpy(rng.normal(size=shape) * 1e3).to(dtype)
    x[0, 0, 0] = -0.0
    compiled = as_batch(polytope, x, center=False)
    reference = as_batch(polytope, x.clone().requires_grad_(True), center=False)
    assert torch.equal(compiled.values, reference.values.detach())
    assert torch.equal(compiled.values.signbit(), reference.values.detach().signbit())


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("bad, message", [(float("nan"), "NaN"), (float("inf"), "infinite"), (-float("inf"), "-inf")])
def test_compiled_pass_rejects_non_finite_scores_anywhere(center, bad, message):
    """The pass checks every entry as it reads it, variables or not (the diagonal here)."""
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(2, 4, 4, dtype=dtype)
        x[1, 2, 2] = bad
        with pytest.raises(ValueError, match=f"scores contains {message}"):
            as_batch(Arborescence(), x, center=center)
