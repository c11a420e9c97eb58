"""The training loop shared by every experiment.

:func:`train` runs epochs of mini-batch updates in a seeded order (each update optionally adds an
auxiliary loss, such as the supervised loss of an intermediate model interleaved with the
downstream batches), evaluates on the dev set after each epoch, keeps the best model by dev
score, stops early when the dev score has not improved for ``patience`` epochs, shows a tqdm progress bar, checkpoints after each
epoch (and resumes from the checkpoint when one exists) and, under ``torchrun``, trains with
DistributedDataParallel, each process on its share of every batch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from spigot.experiments import distributed
from spigot.experiments.checkpoint import load_checkpoint, save_checkpoint
from spigot.experiments.reproducibility import (
    batch_order,
    check_seed,
    random_states,
    restore_random_states,
)

#: ``(model, example_indices) -> per-example losses``: the model may be DDP-wrapped.
ExampleLosses = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]

#: ``(model, epoch, batch) -> scalar loss`` added to update ``batch`` of ``epoch`` (the model unwrapped).
AuxiliaryLoss = Callable[[torch.nn.Module, int, int], torch.Tensor]


@dataclass
class TrainResult:
    """What :func:`train` reports; the model it was given now holds the best dev weights.

    Attributes
    ----------
    best_score
        The best dev score over the epochs.
    best_epoch
        The epoch (1-based) that reached it.
    history
        One dict per epoch: ``epoch``, ``loss`` (mean training loss of this process's
        examples), ``dev`` (dev score) and ``seconds`` (wall-clock time of the epoch).
    resumed_from
        The number of epochs the checkpoint already held, or ``None`` for a fresh start.
    stopped_early
        Whether training stopped before ``epochs`` because the dev score stopped improving.
    """

    best_score: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    stopped_early: bool = False


def batch_loss(losses: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The loss to differentiate for one process's per-example ``losses`` of a global batch.

    DDP averages gradients over processes, so each process scales its sum by
    ``world_size / batch_size``: the update is then the gradient of the mean loss over the whole
    batch, as in a single process (where this is just the mean).
    """
    return losses.sum() * (distributed.world_size() / batch_size)


def backward_batch(
    net: torch.nn.Module,
    example_losses: ExampleLosses,
    indices: torch.Tensor,
) -> tuple[float, int]:
    """Accumulate the gradient of the mean loss over the batch ``indices`` into the parameters.

    ``net`` is the model or its DistributedDataParallel wrapper; under ``torchrun`` this process
    computes the losses of its share of ``indices`` only and DDP combines the shares, so every
    process ends up with the whole batch's gradient. A process whose share is empty (a batch
    smaller than the number of processes) runs the first example with weight 0, which keeps
    DDP's collective calls in step and adds nothing. Returns this process's loss sum and
    example count (for logging).

    Raises
    ------
    FloatingPointError
        A loss or a parameter's gradient is NaN or infinite.
    """
    mine = distributed.shard(indices)
    if mine.numel() == 0:
        (example_losses(net, indices[:1]).sum() * 0.0).backward()
        return 0.0, 0
    losses = example_losses(net, mine)
    if not bool(torch.isfinite(losses.detach()).all()):
        raise FloatingPointError(
            "the training loss is NaN or infinite; training diverged (try a smaller learning rate)"
        )
    batch_loss(losses, len(indices)).backward()
    if not all(bool(torch.isfinite(p.grad).all()) for p in net.parameters() if p.grad is not None):
        raise FloatingPointError(
            "a gradient is NaN or infinite (the loss is finite): a layer's backward pass failed "
            "numerically; training stopped before the update"
        )
    return float(losses.detach().sum()), int(mine.numel())


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    example_losses: ExampleLosses,
    n_examples: int,
    batch_size: int,
    epochs: int,
    evaluate: Callable[[torch.nn.Module], float],
    seed: int,
    checkpoint: Path | str | None = None,
    progress: bool = True,
    description: str = "train",
    patience: int | None = None,
    auxiliary: AuxiliaryLoss | None = None,
) -> TrainResult:
    """Train ``model`` and leave it holding the weights with the best dev score.

    Parameters
    ----------
    model
        The model; it is wrapped in DistributedDataParallel under ``torchrun``.
    optimizer
        Optimizer over ``model``'s trainable parameters.
    example_losses
        ``(model, indices) -> losses``: the per-example training losses (shape ``(len(indices),)``)
        of the training examples ``indices``.
    n_examples
        Number of training examples (indices are ``0..n_examples-1``).
    batch_size
        Examples per update, over all processes together.
    epochs
        Passes over the training set (at most, with ``patience``).
    evaluate
        ``model -> score`` on the dev set, higher is better; called in eval mode, without
        gradients, on the unwrapped model, after every epoch.
    seed
        Fixes the batch order; seed the global generators (model initialisation) before
        building the model, with :func:`~spigot.experiments.reproducibility.seed_everything`.
    checkpoint
        File to save the state to after every epoch, and to resume from if it exists.
    progress
        Show a tqdm progress bar (main process only).
    description
        The progress bar's label.
    patience
        Stop once the dev score has not improved for this many epochs (``None``: run every
        epoch).
    auxiliary
        ``(model, epoch, batch) -> loss``: a scalar loss whose gradient is added to each update
        (after the batch's own; the same on every process, so DDP replicas stay in step), e.g.
        an intermediate model's supervised loss on a batch of its own data.
    """
    _check_positive(n_examples=n_examples, batch_size=batch_size, epochs=epochs)
    if patience is not None:
        _check_positive(patience=patience)
    seed = check_seed(seed)
    state = load_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_random_states(state["random"])
        start, best_score, best_epoch = state["epoch"], state["best_score"], state["best_epoch"]
        best_weights, history = state["best_model"], state["history"]
        resumed_from: int | None = start
    else:
        start, best_score, best_epoch = 0, -math.inf, 0
        best_weights, history, resumed_from = copy.deepcopy(model.state_dict()), [], None
    net = distributed.wrap(model)

    bar = tqdm(
        total=epochs,
        initial=start,
        desc=description,
        unit="epoch",
        leave=False,
        disable=not (progress and distributed.is_main_process()),
    )
    batches_per_epoch = math.ceil(n_examples / batch_size)
    stopped_early = False
    for epoch in range(start, epochs):
        if patience is not None and epoch - best_epoch >= patience:
            stopped_early = True
            break
        started = time.perf_counter()
        net.train()
        order = batch_order(n_examples, seed, epoch)
        total, count = 0.0, 0
        for b in range(batches_per_epoch):
            optimizer.zero_grad(set_to_none=True)
            batch = order[b * batch_size : (b + 1) * batch_size]
            loss_sum, examples = backward_batch(net, example_losses, batch)
            if auxiliary is not None:
                _backward_auxiliary(model, auxiliary(model, epoch, b))
            optimizer.step()
            total += loss_sum
            count += examples
        score = _evaluate(model, evaluate)
        if score > best_score:
            best_score, best_epoch = score, epoch + 1
            best_weights = copy.deepcopy(model.state_dict())
        seconds = time.perf_counter() - started
        history.append(
            {"epoch": epoch + 1, "loss": total / max(count, 1), "dev": score, "seconds": seconds}
        )
        if checkpoint is not None:
            if distributed.is_main_process():
                saved = _state(
                    model, optimizer, epoch + 1, best_score, best_epoch, best_weights, history
                )
                save_checkpoint(checkpoint, saved)
            distributed.barrier()
        bar.update(1)
        bar.set_postfix(
            loss=f"{history[-1]['loss']:.4f}", dev=f"{score:.4f}", best=f"{best_score:.4f}"
        )
    bar.close()
    model.load_state_dict(best_weights)
    model.eval()
    return TrainResult(best_score, best_epoch, history, resumed_from, stopped_early)


def _backward_auxiliary(model: torch.nn.Module, loss: torch.Tensor) -> None:
    if not bool(torch.isfinite(loss.detach())):
        raise FloatingPointError("the auxiliary training loss is NaN or infinite; training diverged")
    loss.backward()


def _evaluate(model: torch.nn.Module, evaluate: Callable[[torch.nn.Module], float]) -> float:
    model.eval()
    with torch.no_grad():
        score = float(evaluate(model))
    if not math.isfinite(score):
        raise ValueError(f"the dev evaluation returned {score}; it must be a finite number")
    return score


def _state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    best_score: float,
    best_epoch: int,
    best_weights: dict[str, torch.Tensor],
    history: list[dict[str, float]],
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "best_score": best_score,
        "best_epoch": best_epoch,
        "best_model": best_weights,
        "history": history,
        "random": random_states(),
    }


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
