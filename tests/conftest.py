"""Shared fixtures: small, fast settings of the built-in task."""

import sys
from pathlib import Path

import gymnasium as gym
import pytest

# The experiments under benchmarks/ are not installed; their tests import them as users would run them.
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

try:  # tiny models: one thread is much faster than two fighting over busy cores
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

import mgpo_env  # noqa: F401  (registers mgpo/HighResVQA-v0)

# A 1024-pixel canvas fits the budget with little shrinking; tests that need the
# default 3920-pixel canvas say so.
SMALL_TASK = {"num_samples": 12, "canvas_size": 1024, "target_size": 48, "clutter": 20}


@pytest.fixture
def small_env():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, max_pixels=256 * 28 * 28, min_pixels=64 * 28 * 28)
    yield env
    env.close()
