"""Data-parallel training under ``torchrun`` (DistributedDataParallel, gloo backend on CPU).

``torchrun --nproc_per_node N -m spigot experiment ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and a rendezvous address in their environment; :func:`init_from_environment`
joins them into one process group. Every process then builds the same model from the same seed,
takes its own share of each batch (:func:`shard`), and DDP averages the gradients, so one step
equals a single-process step on the whole batch. Only the main process (rank 0) writes files
and prints.
"""

from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def init_from_environment(backend: str = "gloo") -> bool:
    """Join the process group described by ``torchrun``'s environment, if there is one.

    Returns
    -------
    Whether this process is part of a group of more than one process.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    """Whether a process group of more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    if is_distributed():
        dist.barrier()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This process's contiguous share of a batch of example indices (all of it when alone)."""
    if not is_distributed():
        return indices
    return torch.tensor_split(indices, world_size())[rank()]


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when distributed and trainable, else itself."""
    if not is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    return DistributedDataParallel(model)


def shutdown(wait: bool = True) -> None:
    """Leave the process group, if one is active.

    With ``wait`` (after a successful run) every process first waits for the others: a gloo
    process that tears its group down while a peer still uses the connection aborts the peer.
    After a failure, pass ``wait=False``: the peers may never arrive, and ``torchrun`` stops
    them once this process exits with an error.
    """
    if dist.is_available() and dist.is_initialized():
        # DistributedDataParallel wrappers live in reference cycles; free the dead ones while
        # their process group still exists (freeing them after it is gone aborts the process).
        gc.collect()
        if wait:
            dist.barrier()
        dist.destroy_process_group()
