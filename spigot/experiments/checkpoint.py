"""Saving and loading training state atomically, so an interrupted run resumes where it stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename.

    A crash during the write leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path | str) -> dict[str, Any] | None:
    """The state saved at ``path``, or ``None`` if there is no checkpoint.

    Checkpoints hold optimizer states and random generator states (numpy arrays, Python
    tuples), so they are read with ``weights_only=False``: load only checkpoints you wrote.
    """
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
