"""The head-selection relaxation: its compiled simplex thresholds and differentiable closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spigot import HeadSelection
from spigot._word_graphs import arc_mask
from spigot.solvers import project_simplex
from spigot._simplex_kernel import simplex_projections
from spigot.projections import simplex_threshold


def sorted_threshold(row: np.ndarray) -> float:
    """Held-Wolfe-Crowder threshold of one row of valid entries, by sorting."""
    u = np.sort(row)[::-1]
    cumulative = np.cumsum(u) - 1.0
    support = np.flatnonzero(u * np.arange(1, len(u) + 1) > cumulative)[-1] + 1
    return cumulative[support - 1] / support


@pytest.mark.parametrize("width", [1, 2, 7, 51])
def test_compiled_projection_matches_the_sorting_method(width):
    rng = np.random.default_rng(width)
    values = rng.normal(size=(300, width)) * rng.choice([0.01, 1.0, 30.0], size=(300, 1))
    mask = rng.random((300, width)) < 0.7
    mask[:5] = False  # rows without a valid entry
    out = np.empty_like(values)
    simplex_projections(values, mask, True, out)
    for row, valid, p in zip(values, mask, out):
        expected = np.zeros(width)
        if valid.any():
            expected[valid] = np.maximum(row[valid] - sorted_threshold(row[valid]), 0.0)
        np.testing.assert_allclose(p, expected, atol=1e-12)
    simplex_projections(values, mask, False, out)  # mask ignored
    expected = np.maximum(values - np.array([[sorted_threshold(row)] for row in values]), 0.0)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_compiled_and_batched_torch_projections_agree():
    x = torch.randn(64, 33, dtype=torch.float64) * 4.0
    mask = torch.rand(64, 33) < 0.8
    tau = simplex_threshold(x, mask)  # the device-agnostic torch path
    torch.testing.assert_close(project_simplex(x, mask=mask), (x - tau).clamp(min=0.0) * mask)


def test_project_simplex_on_cpu_sums_to_one_over_valid_entries():
    x = torch.randn(4, 9, 11, dtype=torch.float64) * 3.0
    lengths = torch.randint(1, 12, (4, 9))
    p = project_simplex(x, lengths)
    valid = torch.arange(11) < lengths[..., None]
    assert torch.allclose(p.sum(dim=-1), torch.ones(4, 9, dtype=torch.float64))
    assert (p[~valid] == 0).all() and (p >= 0).all()


def test_head_selection_projection_is_differentiable():
    x = torch.randn(2, 5, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    project = HeadSelection().closed_form()
    assert torch.autograd.gradcheck(lambda t: project(t, lengths), (x,))


def test_compiled_head_selection_projection_agrees_with_the_torch_path():
    x = torch.randn(16, 12, 12, dtype=torch.float64) * 3.0
    lengths = torch.randint(1, 12, (16,))
    valid = arc_mask(lengths, 12, 16, x.device).transpose(-1, -2)
    columns = x.transpose(-1, -2)
    expected = ((columns - simplex_threshold(columns, valid)).clamp(min=0.0) * valid).transpose(-1, -2)
    p = HeadSelection().closed_form()(x, lengths)
    torch.testing.assert_close(p, expected)


def test_head_selection_projection_follows_float32():
    x = torch.randn(3, 6, 6)
    result = HeadSelection().project(x, solver="closed-form")
    assert result.x.dtype == torch.float32
    assert torch.allclose(result.x.sum(dim=1)[:, 1:], torch.ones(3, 5), atol=1e-6)
