"""Run by tests/agents/test_trainer.py under `accelerate launch` (2 processes) or plain python (1).

Usage: ``distributed_worker.py CONFIG OUTPUT``. Trains the saved config (the test's tiny
training config, which it writes) into OUTPUT, then every rank saves its weights, so the
test can compare ranks with each other and with a single-process run of the same global batch.
"""

import dataclasses
import sys
from pathlib import Path

import torch

from mgpo_agents.config import MGPOConfig
from mgpo_agents.trainer import MGPOTrainer


def main() -> None:
    output = Path(sys.argv[2])
    config = dataclasses.replace(MGPOConfig.load(Path(sys.argv[1])), output_dir=str(output))
    trainer = MGPOTrainer(config)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.accelerator.is_main_process:
        torch.save({k: v.detach().clone() for k, v in unwrapped.state_dict().items()}, output / "weights-start.pt")
    trainer.train(progress=False)
    torch.save({k: v.detach().clone() for k, v in unwrapped.state_dict().items()}, output / f"weights-rank{trainer.rank}.pt")


if __name__ == "__main__":  # never on import (pytest imports modules for doctests)
    main()
