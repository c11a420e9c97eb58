"""Cost of one ``parse-then-emotion`` training step: latent semantic graph against latent tree.

For every method, the same model sizes, the same pre-trained-parser regime and the same tweet
batches (the batches of seed 0's first epoch in order, one warm-up step then ``--steps`` timed ones, each with its interleaved batch
of gold PetroGold structures) are trained once with the tree structure (preset ``full``) and
once with the semantic graph (preset ``semantic-graph``; SPIGOT also with its exact projection,
preset ``semantic-graph-exact``), the two models' steps interleaved so that the machine's load
falls on both alike. A step is what the runner does per update: the classification loss's
forward and backward, the parser's supervised loss's forward and backward, the Adam update.
float32 (the experiment's dtype), one torch thread. Prints a markdown table of the median
seconds per step and the graph / tree ratio::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/structure_step_cost.py [--steps 10]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from spigot.errors import UnsupportedOperation
from spigot.experiments import get_experiment
from spigot.experiments.parse_then_emotion import (
    EMOTION_METHODS,
    build_model,
    build_optimizer,
    gold_batch_loss,
    load_emotion_data,
    pretrained_parser,
    tweet_losses,
)
from spigot.experiments.reproducibility import batch_order, seed_everything
from spigot.experiments.training import backward_batch

SEED = 0


def stepper(method: str, preset: str):
    """A function running training step ``k`` of ``method`` under ``preset`` (``None`` if the
    method does not apply to the preset's structure)."""
    config = get_experiment("parse-then-emotion").config(preset)
    data = load_emotion_data(config.data)
    parser = pretrained_parser(config, data, SEED)
    try:
        model = build_model(method, config, data, parser).train()
    except UnsupportedOperation:
        return None
    optimizer = build_optimizer(model, config)
    train_set, gold = data.tweets["train"], data.treebank["parser"]
    order = batch_order(len(train_set), SEED, 0)
    batches = math.ceil(len(train_set) / config.batch_size)

    def step(k: int) -> float:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        start = (k % batches) * config.batch_size
        batch = order[start : start + config.batch_size]
        backward_batch(model, lambda net, indices: tweet_losses(net, train_set, indices), batch)
        gold_batch_loss(model, config, gold, SEED, 0, k).backward()
        optimizer.step()
        return time.perf_counter() - started

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (after one warm-up step)")
    args = parser.parse_args()
    if args.steps < 1:
        raise SystemExit(f"--steps must be a positive integer, got {args.steps}")
    torch.set_num_threads(1)
    seed_everything(SEED)
    rows = [(m, "full", "semantic-graph") for m in EMOTION_METHODS]
    rows.insert(EMOTION_METHODS.index("spigot") + 1, ("spigot", "full", "semantic-graph-exact"))
    print("| method | tree (s / step) | semantic graph (s / step) | graph / tree | dtype |")
    print("|---|---:|---:|---:|---|")
    for method, tree_preset, graph_preset in rows:
        steps = [stepper(method, tree_preset), stepper(method, graph_preset)]
        times: list[list[float]] = [[], []]
        for k in range(args.steps + 1):
            for i, step in enumerate(steps):
                if step is not None:
                    seconds = step(k)
                    if k > 0:
                        times[i].append(seconds)
        tree, graph = (statistics.median(t) if t else None for t in times)
        label = method + (" (exact projection on graphs)" if graph_preset.endswith("exact") else "")
        cells = [f"{v:.3f}" if v is not None else "— (does not apply)" for v in (tree, graph)]
        ratio = f"{graph / tree:.2f}x" if tree and graph else "—"
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} | float32 |", flush=True)


if __name__ == "__main__":
    main()
