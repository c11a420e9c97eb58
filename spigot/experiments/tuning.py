"""The dev grid every experiment shares: a learning rate times each method's own knob.

Every method gets the same grid of learning rates; a method with a knob of its own (the step
``eta`` of the SPIGOT family, the noise ``sigma`` of the perturbed maximizer, I-MLE's
``lambda_``) also gets the same relative grid of that knob around its configured value. The
configured setting is always one of the grid's points, so its runs are shared with an untuned
run of the same configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Each method's own knob: the estimator option a grid varies.
METHOD_KNOBS = {
    "spigot": "eta",
    "spigot-ce": "eta",
    "spigot-eg": "eta",
    "spigot-ce-relaxed": "eta",
    "spigot-eg-relaxed": "eta",
    "perturbed": "sigma",
    "imle": "lambda_",
}

#: Factors on the configured learning rate and knob, per grid size.
GRID_FACTORS = {
    "reduced": ((0.25, 1.0), (1.0, 4.0)),
    "full": ((0.25, 1.0, 2.5), (0.25, 1.0, 4.0)),
}


def learning_rate_grid(
    methods: Iterable[str],
    lr_field: str,
    lr: float,
    estimator_options: dict[str, dict[str, Any]],
    size: str,
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Per method, the settings ``{lr_field: lr * a, "option:KNOB": knob * b}`` of grid ``size``.

    ``size`` is ``"none"`` (no grid: ``{}``), ``"reduced"`` (learning rate x (1/4, 1), knob x
    (1, 4)) or ``"full"`` (learning rate x (1/4, 1, 5/2), knob x (1/4, 1, 4)); a knob's
    configured value is its estimator option, or 1 (every knob's default) when unset.
    """
    if size == "none":
        return {}
    if size not in GRID_FACTORS:
        raise ValueError(f"size must be one of {('none', *GRID_FACTORS)}, got {size!r}")
    lr_factors, knob_factors = GRID_FACTORS[size]
    grids: dict[str, tuple[dict[str, Any], ...]] = {}
    for method in methods:
        rates = [{lr_field: lr * f} for f in lr_factors]
        knob = METHOD_KNOBS.get(method)
        if knob is None:
            grids[method] = tuple(rates)
            continue
        base = float(estimator_options.get(method, {}).get(knob, 1.0))
        grids[method] = tuple({**rate, f"option:{knob}": base * f} for rate in rates for f in knob_factors)
    return grids
