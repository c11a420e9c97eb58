"""A graph convolution over a dependency structure (Marcheggiani and Titov, 2017, in brief).

Given node states :math:`H` (node 0 the root) and a structure :math:`Z` with :math:`Z_{hm}` the
weight of the arc ``h -> m`` (a tree's 0/1 matrix, or the marginals or relaxed structure an
estimator outputs), one layer computes, for every node,

.. math:: H' = \\mathrm{ReLU}\\big(H W_{\\text{self}} + (Z^\\top H) W_{\\text{head}}
          + (Z H) W_{\\text{child}} + b\\big),

so each node hears its (expected) head through :math:`Z^\\top H` and its (expected) children
through :math:`Z H`, with separate weights for the two directions. The layer is linear in
:math:`Z`, so it accepts any point of the polytope and passes a gradient to it.
"""

from __future__ import annotations

import torch
from torch import nn


class TreeGCNLayer(nn.Module):
    """One graph-convolution layer over ``(B, T, T)`` arc weights.

    Parameters
    ----------
    input_dim, output_dim
        Sizes of the node states before and after the layer.
    """

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        self.self_loop = nn.Linear(input_dim, output_dim)
        self.from_head = nn.Linear(input_dim, output_dim, bias=False)
        self.from_children = nn.Linear(input_dim, output_dim, bias=False)

    def forward(self, states: torch.Tensor, arcs: torch.Tensor) -> torch.Tensor:
        """New states ``(B, T, output_dim)`` from ``states`` ``(B, T, input_dim)`` and ``arcs``
        ``(B, T, T)`` (entry ``[h, m]`` for ``h -> m``)."""
        if arcs.shape != (*states.shape[:2], states.shape[1]):
            raise ValueError(
                f"arcs must have shape (B, T, T) = {(*states.shape[:2], states.shape[1])} to "
                f"match states {tuple(states.shape)}, got {tuple(arcs.shape)}"
            )
        heads = arcs.transpose(1, 2) @ states
        children = arcs @ states
        return torch.relu(
            self.self_loop(states) + self.from_head(heads) + self.from_children(children)
        )


class TreeGCN(nn.Module):
    """A stack of :class:`TreeGCNLayer` with dropout between layers.

    Parameters
    ----------
    input_dim, hidden_dim
        Input size and the size of every layer's output.
    layers
        Number of layers (at least 1).
    dropout
        Dropout before each layer (training mode only).
    """

    def __init__(self, input_dim: int, hidden_dim: int, layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        sizes = [input_dim] + [hidden_dim] * layers
        self.layers = nn.ModuleList(TreeGCNLayer(a, b) for a, b in zip(sizes, sizes[1:]))
        self.dropout = nn.Dropout(dropout)
        self.output_dim = hidden_dim

    def forward(self, states: torch.Tensor, arcs: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            states = layer(self.dropout(states), arcs)
        return states
