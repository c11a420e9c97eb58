"""Batched simplex projection against entmax.sparsemax, forward and forward+backward.

Usage: ``python benchmarks/bench_simplex.py [--batch 256] [--k 100] [--threads 1]``.
Prints a markdown table with the times and our/entmax ratio (goal: at most 1.0x).
"""

from __future__ import annotations

import argparse

import torch
from entmax import sparsemax

from spigot.solvers import project_simplex
from timing import compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    x = torch.randn(args.batch, args.k, dtype=dtype)
    xg = x.clone().requires_grad_(True)
    g = torch.randn_like(x)
    torch.testing.assert_close(project_simplex(x, validate=False), sparsemax(x, dim=-1))

    def forward_backward(fn):
        def run():
            xg.grad = None
            fn(xg).backward(g)

        return run

    forward = compare(
        {
            "spigot": lambda: project_simplex(x, validate=False),
            "spigot (validated)": lambda: project_simplex(x),
            "entmax": lambda: sparsemax(x, dim=-1),
        }
    )
    both = compare(
        {
            "spigot": forward_backward(lambda t: project_simplex(t, validate=False)),
            "entmax": forward_backward(lambda t: sparsemax(t, dim=-1)),
        }
    )
    print(f"B={args.batch}, k={args.k}, {args.dtype}, threads={args.threads}, torch {torch.__version__}")
    print("| pass | spigot (us) | entmax (us) | ratio spigot/entmax |")
    print("|---|---|---|---|")
    print(f"| forward | {forward['spigot'] * 1e6:.1f} | {forward['entmax'] * 1e6:.1f} | {forward['spigot'] / forward['entmax']:.2f}x |")
    print(
        f"| forward (with NaN/inf and lengths checks) | {forward['spigot (validated)'] * 1e6:.1f} | "
        f"{forward['entmax'] * 1e6:.1f} | {forward['spigot (validated)'] / forward['entmax']:.2f}x |"
    )
    print(f"| forward+backward | {both['spigot'] * 1e6:.1f} | {both['entmax'] * 1e6:.1f} | {both['spigot'] / both['entmax']:.2f}x |")


if __name__ == "__main__":
    main()
