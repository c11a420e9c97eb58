"""Padding rules: every sized axis is cut by default, per-axis lengths, and -inf padding."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from spigot.polytopes import Arborescence, Polytope, ProductOfSimplices, Simplex


class SquareAssignment(Polytope):
    """A user's Birkhoff structure that defines map_one only (no shape hooks)."""

    event_ndim = 2

    def map_one(self, scores):
        rows, cols = linear_sum_assignment(scores, maximize=True)
        out = np.zeros_like(scores)
        out[rows, cols] = 1.0
        return out

    def vertices(self, event_shape):
        n = event_shape[0]
        return np.array([np.eye(n)[list(p)] for p in itertools.permutations(range(n))])


class RowsByColumns(SquareAssignment):
    """Partial assignments of a rectangle, one length per axis."""

    per_axis_lengths = True

    def map_one(self, scores):
        rows, cols = linear_sum_assignment(np.maximum(scores, 0.0), maximize=True)
        out = np.zeros_like(scores)
        keep = scores[rows, cols] > 0
        out[rows[keep], cols[keep]] = 1.0
        return out


class FirstAxisOnly(Polytope):
    """A (G, k) structure that forgot to declare its sized axes."""

    event_ndim = 2

    def map_one(self, scores):
        out = np.zeros_like(scores)
        out[np.arange(scores.shape[0]), scores.argmax(axis=1)] = 1.0
        return out


def test_square_map_one_only_structure_pads_rows_and_columns():
    scores = torch.randn(2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scores[:, 3:, :] = 10.0  # padded rows and columns score highest: they must not be used
    scores[:, :, 3:] = 10.0
    z = SquareAssignment().map(scores, lengths=torch.tensor([3, 5]))
    assert z[0, 3:].abs().sum() == 0 and z[0, :, 3:].abs().sum() == 0
    torch.testing.assert_close(z[0, :3, :3], SquareAssignment().map(scores[0, :3, :3]))
    torch.testing.assert_close(z[0, :3, :3].sum(dim=0), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(z[1], SquareAssignment().map(scores[1]))


def test_square_projection_pads_every_axis():
    x = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    padded = SquareAssignment().project(x[None], solver="active-set", lengths=torch.tensor([3]))
    alone = SquareAssignment().project(x[None, :3, :3], solver="active-set")
    assert padded.x[0, 3:].abs().sum() == 0 and padded.x[0, :, 3:].abs().sum() == 0
    torch.testing.assert_close(padded.x[0, :3, :3], alone.x[0], atol=1e-9, rtol=0)


def test_product_of_simplices_still_counts_groups():
    scores = torch.randn(4, 3, dtype=torch.float64)
    z = ProductOfSimplices().map(scores[None], lengths=torch.tensor([2]))
    assert z[0, 2:].abs().sum() == 0
    torch.testing.assert_close(z[0, :2].sum(dim=1), torch.ones(2, dtype=torch.float64))


def test_undeclared_rectangular_structure_refuses_one_length():
    with pytest.raises(ValueError, match="sized_axes"):
        FirstAxisOnly().map(torch.randn(1, 4, 3), lengths=torch.tensor([2]))
    assert FirstAxisOnly().map(torch.randn(1, 4, 3)).shape == (1, 4, 3)


def test_per_axis_lengths_cut_rows_and_columns():
    scores = torch.rand(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.1
    lengths = torch.tensor([[2, 5], [4, 3], [1, 1]])
    z = RowsByColumns().map(scores, lengths=lengths)
    for b, (rows, cols) in enumerate(lengths.tolist()):
        mask = torch.zeros(4, 5, dtype=torch.bool)
        mask[:rows, :cols] = True
        assert z[b][~mask].abs().sum() == 0
        torch.testing.assert_close(z[b, :rows, :cols], RowsByColumns().map(scores[b, :rows, :cols]))
    result = RowsByColumns().project(scores, solver="active-set", lengths=lengths)
    assert result.x[0, 2:].abs().sum() == 0 and result.x[1, :, 3:].abs().sum() == 0
    assert bool(result.success.all())


def test_per_axis_lengths_errors():
    scores = torch.rand(2, 4, 5)
    with pytest.raises(ValueError, match=r"length of event axis 1.*\[1, 5\]"):
        RowsByColumns().map(scores, lengths=torch.tensor([[2, 6], [1, 1]]))
    with pytest.raises(ValueError, match="one per sized axis"):
        RowsByColumns().map(scores, lengths=torch.tensor([[2, 3, 1], [1, 1, 1]]))
    with pytest.raises(ValueError, match="one length per sized axis"):
        RowsByColumns().map(scores, lengths=torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="batch shape"):
        SquareAssignment().map(torch.rand(2, 4, 4), lengths=torch.tensor([[2, 2], [1, 1]]))
    with pytest.raises(ValueError, match="batch shape"):
        Arborescence().map(torch.rand(2, 4, 4), lengths=torch.tensor([[2, 2], [1, 1]]))


def test_minus_inf_padding_says_to_pass_lengths():
    scores = torch.randn(2, 5)
    scores[0, 3:] = float("-inf")
    with pytest.raises(ValueError, match=r"-inf entries.*pass `lengths`"):
        Simplex().map(scores)
    scores[0, 3:] = float("inf")
    with pytest.raises(ValueError, match="infinite entries; every entry must be finite$"):
        Simplex().map(scores)
    scores[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN entries"):
        Simplex().map(scores)
