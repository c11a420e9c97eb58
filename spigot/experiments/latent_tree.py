"""The latent-tree stage shared by the tree experiments: arc scores -> a method's latent layer.

:class:`LatentTree` holds an arc scorer (a parser, or the fixed :class:`ChainScores`) and a
method's latent layer (see :mod:`spigot.experiments.methods`). In training mode the latent
layer turns the scores into the structure the downstream model reads (a tree for the argmax
methods, marginals or a sparse mixture of trees for the others) and carries the downstream
gradient back to the scorer; in eval mode every method reads the highest-scoring tree, so all
methods are evaluated on the same kind of hard decision. A frozen scorer has no trainable
parameters and stays in eval mode (no dropout), as in a pipeline. An optional ``scale``
multiplies the scores the latent layer reads in training (an inverse temperature; the argmax is
unchanged by it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from spigot.experiments.methods import latent_structure
from spigot.polytopes.base import Polytope

#: The latent layers' options on trees unless a configuration says otherwise. SPIGOT projects
#: onto the head-selection relaxation, as in the paper (``{"spigot": {"solver": "exact"}}``
#: projects onto the tree polytope itself). SPIGOT-CE projects there too: its exact projection
#: starts from the marginals, deep inside the polytope, and the active set took 68 s per epoch
#: of ``sentiment`` against 2.4 s for SPIGOT-EG (SPIGOT-CE at the relaxed point likewise). The perturbed maximizer averages 20 samples
#: instead of 100. I-MLE takes ``lambda_=100``: its gradient is 0 unless ``lambda * g`` changes
#: a perturbed argmax, and with the default 1 it never did (0 of 10 batches of 32 gave the
#: parser a gradient, in ``sentiment`` at initialisation and in ``parse-then-label`` after
#: pre-training; 10 of 10 with 100).
TREE_ESTIMATOR_OPTIONS: dict[str, dict[str, Any]] = {
    "spigot": {"solver": "relaxed"},
    "spigot-ce": {"solver": "relaxed"},
    "spigot-ce-relaxed": {"solver": "relaxed"},
    "perturbed": {"n_samples": 20},
    "imle": {"lambda_": 100.0},
}


class ChainScores(nn.Module):
    """Fixed arc scores whose best tree is the chain ``0 -> 1 -> 2 -> ... -> n``.

    Every word's head is the word before it (the first word's head is the root): a
    left-to-right chain, the structure of a sequence model. Entry ``[m - 1, m]`` is 1, every
    other entry 0, so the argmax over (single- or multi-rooted) trees is the chain.
    """

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, T, T)`` for ``tokens`` ``(B, T, ...)`` with ``lengths`` words."""
        batch, size = tokens.shape[:2]
        positions = torch.arange(size, device=tokens.device)
        chain = (positions[:, None] + 1 == positions[None, :]).float()
        inside = positions[None, :] <= lengths[:, None]
        return chain * inside[:, None, :] * inside[:, :, None]


class LatentTree(nn.Module):
    """Arc scorer followed by the latent layer of a method, on a dependency polytope.

    Parameters
    ----------
    scorer
        ``(tokens, lengths) -> (B, n+1, n+1)`` arc scores.
    latent
        The method's layer, ``(scores, lengths) -> structure``.
    polytope
        The tree polytope (its MAP decides in eval mode).
    frozen
        Keep the scorer fixed: its parameters get no gradient and it stays in eval mode.
    scale
        Positive factor on the scores given to the latent layer in training.
    """

    def __init__(
        self,
        scorer: nn.Module,
        latent: nn.Module,
        polytope: Polytope,
        frozen: bool = False,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.scorer = scorer
        self.latent = latent
        self.polytope = polytope
        self.frozen = frozen
        self.scale = float(scale)
        if frozen:
            self.scorer.requires_grad_(False)
            self.scorer.eval()

    def train(self, mode: bool = True) -> LatentTree:
        super().train(mode)
        if self.frozen:
            self.scorer.eval()
        return self

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        downstream: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The structure ``(B, n+1, n+1)``: the latent layer's output in training mode, the
        highest-scoring tree in eval mode. ``downstream`` (the training loss as a function of
        the structure) goes to a latent layer that evaluates it at a second point (see
        :func:`~spigot.experiments.methods.latent_structure`)."""
        scores = self.scorer(tokens, lengths)
        if self.training:
            return latent_structure(self.latent, scores * self.scale, lengths, downstream)
        return self.polytope.map(scores, lengths)
