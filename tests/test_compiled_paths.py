"""The compiled CPU passes give the results of the torch expressions they stand for.

``as_batch``'s shift-and-mask (``spigot._batch_kernel``) runs on CPU tensors outside autograd,
the SPIGOT-family target :math:`s - \\eta_b g_b` (``spigot._step_kernel``) in the backward
passes; a tensor that requires grad (or another device) takes the torch expression. Both must
agree at every scale, with padding and with the polytope's variable masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spigot._batch import as_batch
from spigot.autodiff._common import gradient_step, stepped_target
from spigot.polytopes import Arborescence, Simplex, SpanningTree

DTYPES = (torch.float32, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule, threshold", [("normalized", None), ("reference", 1.0), ("reference", 1e-3), ("fixed", None)])
@pytest.mark.parametrize("scale", [1e-40, 1e-5, 1.0, 1e30])
@pytest.mark.parametrize("mask", ["none", "shared", "per-instance"])
def test_compiled_target_matches_start_minus_gradient_step(rng, dtype, rule, threshold, scale, mask):
    batch = 4
    grad = torch.from_numpy(rng.normal(size=(batch, 6, 6)) * scale).to(dtype)
    grad[1] = 0.0  # no gradient: no step
    start = torch.from_numpy(rng.random((batch, 6, 6))).to(dtype)
    shared = torch.from_numpy(rng.random((6, 6)) > 0.3)
    variables = {
        "none": None,
        "shared": shared,
        "per-instance": shared & torch.from_numpy(rng.random((batch, 6, 6)) > 0.2),
    }[mask]
    compiled = stepped_target(start, grad, rule, 0.7, threshold, variables)
    reference = start - gradient_step(grad, rule, 0.7, threshold, variables)
    assert compiled.dtype == dtype and compiled.shape == start.shape
    assert torch.isfinite(compiled).all()
    tolerance = 1e-6 if dtype == torch.float32 else 1e-14
    scale_of = max(1.0, float(reference.abs().max()))
    assert float((compiled - reference).abs().max()) <= tolerance * scale_of
    if variables is not None:  # entries that are not variables keep the start
        outside = ~variables.expand(start.shape)
        assert torch.equal(compiled[outside], start[outside])
