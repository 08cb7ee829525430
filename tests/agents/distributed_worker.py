"""Run by tests/test_trainer.py under `accelerate launch` (2 processes) or plain python (1).

Trains 2 steps of 2 questions x 4 rollouts with the tiny model, then every rank
saves its weights, so the test can compare ranks with each other and with a
single-process run of the same global batch.
"""

import sys
from pathlib import Path

import torch

from mgpo_agents.config import MGPOConfig
from mgpo_agents.trainer import MGPOTrainer


def main() -> None:
    output = Path(sys.argv[1])
    config = MGPOConfig(
        model="builtin:tiny",
        dataset="synthetic",
        dataset_kwargs={"num_samples": 8, "canvas_size": 1024, "target_size": 64, "clutter": 10},
        min_pixels=16 * 28 * 28,
        max_pixels=36 * 28 * 28,
        group_size=4,
        prompts_per_step=2,
        mini_batch_prompts=2,
        micro_batch_size=2,
        max_new_tokens=6,
        learning_rate=1e-3,
        kl_coef=0.01,
        steps=2,
        save_every=100,
        tensorboard=False,
        output_dir=str(output),
        dtype="float32",
    )
    trainer = MGPOTrainer(config)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.accelerator.is_main_process:
        torch.save({k: v.detach().clone() for k, v in unwrapped.state_dict().items()}, output / "weights-start.pt")
    trainer.train(progress=False)
    torch.save({k: v.detach().clone() for k, v in unwrapped.state_dict().items()}, output / f"weights-rank{trainer.rank}.pt")


if __name__ == "__main__":  # never on import (pytest imports modules for doctests)
    main()
