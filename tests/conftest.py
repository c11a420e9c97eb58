"""Shared pytest configuration: hypothesis profile, CUDA skipping, seeded randomness.

Tests marked ``cuda`` compare results on a target device with those on the CPU. The target is
``SPIGOT_TEST_DEVICE`` (default ``"cuda"``; the ``target_device`` fixture); they are skipped,
with the reason shown, when it is a CUDA device and none is visible. ``SPIGOT_TEST_DEVICE=cpu``
runs them CPU against CPU, which exercises the tests' own logic on a machine without a GPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "spigot",
    deadline=None,
    derandomize=True,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("spigot")


#: Environment variable naming the device that tests marked ``cuda`` run on.
DEVICE_VARIABLE = "SPIGOT_TEST_DEVICE"


def target_device_name() -> str:
    """The target device of the tests marked ``cuda`` (``SPIGOT_TEST_DEVICE``, default ``"cuda"``)."""
    return os.environ.get(DEVICE_VARIABLE, "").strip() or "cuda"


def pytest_collection_modifyitems(config, items):
    target = torch.device(target_device_name())
    if target.type != "cuda" or torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason=f"needs a CUDA device; none is visible (torch.cuda.is_available() is False; "
        f"{DEVICE_VARIABLE}={target})"
    )
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def target_device() -> torch.device:
    """The device that tests marked ``cuda`` compare against the CPU (see the module docstring).

    A bare ``"cuda"`` is resolved to the current CUDA device, so that ``tensor.device ==
    target_device`` holds for tensors placed there.
    """
    device = torch.device(target_device_name())
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread, as the experiment runner trains, restoring the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
