"""Where a latent parser's decisions drift under end-to-end training: ``parse-then-emotion`` runs.

``python scripts/latent_parser_drift.py RUNS PRESET [SEEDS]`` reads the kept model of every
finished run of a preset, at every setting of its reduced dev grid
(``RUNS/parse-then-emotion/PRESET-CONFIGID/METHOD/seed-S/checkpoint.pt``, written by
``spigot experiment parse-then-emotion --preset PRESET --grid reduced --run-dir RUNS``) and
prints, per method and setting, means over the seeds of:

- on PetroGold's test sentences, the parser's MAP structures against the gold ones: parts per
  word, labeled precision and recall (arcs with their relation group; for trees every word has
  one head, so precision = recall = UAS) and unlabeled precision and recall (arcs, any label);
- on the first 64 training tweets, the parts per word (entries above 1/2) of the structures the
  classifier reads in training (the latent layer's output: a MAP structure, or a relaxed point);
- the **net push** of the surrogate gradient :math:`\\nabla_s` that the method's latent layer
  sends to the scores on those tweets (the training loss, dropout off):
  :math:`\\sum_i \\nabla_{s_i} / \\sum_i |\\nabla_{s_i}|` over the valid parts. Gradient descent
  moves the scores by :math:`-\\nabla_s`, so +1 lowers every score (fewer parts chosen), -1
  raises every score; 0 moves mass between parts. Measured with the parser as pre-trained
  (``start``, the same for every method of a seed) and as kept after training (``end``).

The configurations are rebuilt from the preset with the current code; runs made with another
configuration (another digest) are not found.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from spigot.experiments.checkpoint import load_checkpoint
from spigot.experiments.methods import PIPELINE, latent_structure
from spigot.experiments.parse_then_emotion import (
    DIAGNOSTIC_TWEETS,
    ParseThenEmotionExperiment,
    TweetClassifier,
    build_model,
    gold_structures,
    load_emotion_data,
    pretrained_parser,
    structure_polytope,
)
from spigot.experiments.registry import config_id


def parts(structure: torch.Tensor) -> torch.Tensor:
    """0/1 parts per (head, word[, label]) of a MAP structure."""
    return structure > 0.5


def parser_counts(model: TweetClassifier, config, treebank) -> dict[str, float]:
    """Parts per word, labeled and unlabeled precision and recall on ``treebank`` (MAP decoding)."""
    polytope = structure_polytope(config)
    model.eval()
    tokens, lengths, heads, groups = treebank.batch(torch.arange(len(treebank)))
    with torch.no_grad():
        predicted = parts(polytope.map(model.latent.scorer(tokens, lengths), lengths))
    gold = parts(gold_structures(config, heads, groups))
    words = float(lengths.sum())
    labeled = float((predicted & gold).sum())
    if predicted.dim() == 4:
        predicted_arcs, gold_arcs = predicted.any(dim=-1), gold.any(dim=-1)
    else:
        predicted_arcs, gold_arcs = predicted, gold
    unlabeled = float((predicted_arcs & gold_arcs).sum())
    return {
        "parts per word": float(predicted.sum()) / words,
        "labeled precision": labeled / max(float(predicted.sum()), 1.0),
        "labeled recall": labeled / float(gold.sum()),
        "arc precision": unlabeled / max(float(predicted_arcs.sum()), 1.0),
        "arc recall": unlabeled / float(gold_arcs.sum()),
    }


def net_push(model: TweetClassifier, split, config) -> tuple[float, float]:
    """Net push of the surrogate gradient on the first training tweets, and parts per word there."""
    tokens, lengths, labels = split.batch(torch.arange(min(DIAGNOSTIC_TWEETS, len(split))))
    model.eval()
    with torch.no_grad():
        scores = model.latent.scorer(tokens, lengths)
    scores = scores.clone().requires_grad_(True)

    def loss(structure: torch.Tensor) -> torch.Tensor:
        logits = model.read(tokens, lengths, structure)
        return nn.functional.cross_entropy(logits, labels, reduction="sum") / config.batch_size

    structure = latent_structure(model.latent.latent, scores, lengths, loss)
    loss(structure).backward()
    chosen = parts(structure.detach()).sum() / lengths.sum()
    grad = scores.grad
    if grad is None or float(grad.abs().sum()) == 0.0:
        return float("nan"), float(chosen)
    return float(grad.sum() / grad.abs().sum()), float(chosen)


def settings(experiment: ParseThenEmotionExperiment, config) -> dict[tuple[str, str], object]:
    """Every (method, setting) the reduced dev grid tries, with its configuration."""
    found: dict[tuple[str, str], object] = {}
    grid = experiment.grid(config, "reduced")
    for method in experiment.methods():
        for setting in grid.get(method, ({},)):
            label = ", ".join(f"{k.removeprefix('option:')}={v:g}" for k, v in setting.items())
            found[(method, label)] = experiment.with_setting(config, method, setting)
    return found


def main(runs: Path, preset: str, seeds: int) -> None:
    experiment = ParseThenEmotionExperiment()
    config = experiment.config(preset)
    data = load_emotion_data(config.data)
    table: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (method, label), setting in settings(experiment, config).items():
        folder = runs / experiment.name / f"{preset}-{config_id(setting)}" / method
        for seed in range(seeds):
            state = load_checkpoint(folder / f"seed-{seed}" / "checkpoint.pt")
            if state is None:
                continue
            model = build_model(method, setting, data, pretrained_parser(setting, data, seed))
            row = table[(method, label)]
            if method != PIPELINE:
                row["net push (start)"].append(net_push(model, data.tweets["train"], setting)[0])
            model.load_state_dict(state["best_model"])
            for key, value in parser_counts(model, setting, data.treebank["test"]).items():
                row[key].append(value)
            push, chosen = net_push(model, data.tweets["train"], setting)
            row["tweet parts per word"].append(chosen)
            if method != PIPELINE:
                row["net push (end)"].append(push)
    if not table:
        raise SystemExit(f"no finished run of {preset} under {runs}: made with another configuration?")
    columns = [
        "parts per word", "labeled precision", "labeled recall", "arc precision", "arc recall",
        "tweet parts per word", "net push (start)", "net push (end)",
    ]
    print("| method | setting | " + " | ".join(columns) + " | seeds |")
    print("|---|---|" + "---:|" * (len(columns) + 1))
    for (method, label), row in table.items():
        cells = [f"{statistics.fmean(row[c]):.3f}" if row.get(c) else "—" for c in columns]
        print(f"| {method} | {label} | " + " | ".join(cells) + f" | {len(row['parts per word'])} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 5)
