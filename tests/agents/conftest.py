"""The trainer tests' training config: the ``tiny-cpu`` preset (the one definition), made smaller still."""

from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from mgpo_agents.config import MGPOConfig, preset


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen2.5-VL folder (random weights, seed 0), built once per test module."""
    from mgpo_agents.tiny_model import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture
def tiny_training_config(tmp_path: Path) -> Callable[..., MGPOConfig]:
    """``make(directory=tmp_path, **overrides)``: the ``tiny-cpu`` preset at test size, writing to ``directory / "run"``.

    Test size, so that a step takes seconds: 8 questions on a 1024-pixel canvas shown in
    16-36 x 28 x 28 pixels, one question of 4 rollouts a step, replies of at most 6 tokens,
    and a learning rate large enough for a few steps to move the policy measurably.
    No TensorBoard and no evaluation.
    """

    def make(directory: Optional[Path] = None, **overrides: Any) -> MGPOConfig:
        values: dict[str, Any] = dict(
            dataset_kwargs={"num_samples": 8, "canvas_size": 1024, "target_size": 64, "clutter": 10},
            min_pixels=16 * 28 * 28,
            max_pixels=36 * 28 * 28,
            group_size=4,
            prompts_per_step=1,
            mini_batch_prompts=1,
            micro_batch_size=4,
            max_new_tokens=6,
            learning_rate=1e-3,
            steps=2,
            save_every=1,
            tensorboard=False,
            eval_dataset="",
            output_dir=str((directory or tmp_path) / "run"),
        )
        values.update(overrides)
        return preset("tiny-cpu", **values)

    return make
