"""Gradients of fixed batches, computed the way training does, in one process or under torchrun.

``tests/test_experiments_distributed.py`` runs this file with
``torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT`` and compares each process's
gradients with :func:`gradients` computed in a single process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from spigot.experiments import distributed
from spigot.experiments.clusters import ClustersConfig, build_model, make_cluster_data
from spigot.experiments.reproducibility import seed_everything
from spigot.experiments.training import backward_batch

#: SPIGOT with the fixed step, whose surrogate scales with the loss as an exact gradient does. The
#: scale-free steps (normalized, or reference when capped) return a surrogate of the same length
#: whatever the loss's scale, so DDP's average over processes gives 1/world_size of it.
CONFIG = ClustersConfig(
    n_features=8, n_clusters=4, n_train=40, n_dev=4, n_test=4,
    estimator_options={"spigot": {"step": "fixed"}},
)
#: Batches: 7 examples (uneven shares 4 + 3) and 1 example (one process gets none).
BATCHES = {"seven": torch.tensor([3, 17, 5, 29, 11, 0, 38]), "one": torch.tensor([21])}
METHOD = "spigot"
SEED = 7


def gradients(batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Parameter name -> gradient of the mean loss over ``batch`` (DDP-combined under torchrun)."""
    data = make_cluster_data(CONFIG)["train"]
    seed_everything(SEED)
    model = build_model(METHOD, CONFIG, data.x, SEED)
    net = distributed.wrap(model)
    loss = torch.nn.CrossEntropyLoss(reduction="none")

    def example_losses(module: torch.nn.Module, indices: torch.Tensor) -> torch.Tensor:
        logits, _ = module(data.x[indices])
        return loss(logits, data.y[indices])

    net.train()
    backward_batch(net, example_losses, batch)
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def main(out: Path) -> None:
    distributed.init_from_environment()
    for name, batch in BATCHES.items():
        torch.save(gradients(batch), out / f"{name}-rank{distributed.rank()}.pt")
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
