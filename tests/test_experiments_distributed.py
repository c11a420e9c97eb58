"""Data-parallel training: two torchrun processes get the gradients of a single-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import ddp_worker

ROOT = Path(__file__).resolve().parent.parent


def test_two_processes_match_single_process_gradients(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "ddp_worker.py"),
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name, batch in ddp_worker.BATCHES.items():
        single = ddp_worker.gradients(batch)
        assert any(
            bool(g.abs().sum() > 0) for g in single.values()
        ), "the reference gradient is all zero"
        for rank in (0, 1):
            shared = torch.load(tmp_path / f"{name}-rank{rank}.pt")
            assert shared.keys() == single.keys()
            for key, grad in single.items():
                torch.testing.assert_close(
                    shared[key], grad, rtol=1e-5, atol=1e-7, msg=f"{name} batch, rank {rank}, {key}"
                )
