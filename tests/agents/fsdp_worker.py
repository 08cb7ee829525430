"""Run by tests/agents/test_fsdp.py under ``torchrun`` (2 FSDP processes) or plain python (1 process).

Usage: ``fsdp_worker.py CONFIG RUN [RUN ...]``, where each RUN is ``OUTPUT`` (train the saved
config from scratch into OUTPUT) or ``OUTPUT=CHECKPOINT`` (copy CHECKPOINT into OUTPUT's
checkpoints, resume from it and train on). Runs go one after the other in the same processes.
The main process writes ``OUTPUT/final.pt`` (full weights and optimizer state at the end) and,
after a resume, ``OUTPUT/resumed.pt`` (the same, right after loading), so the test can compare;
every process writes ``OUTPUT/held-rankR.json``, the bytes it stores (parameters, optimizer, reference).
"""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import torch
from mgpo_agents.checkpoint import full_model_state, full_optimizer_state
from mgpo_agents.config import MGPOConfig
from mgpo_agents.sharding import local_bytes
from mgpo_agents.trainer import MGPOTrainer


def held(trainer: MGPOTrainer, path: Path) -> None:
    """What this process stores of the policy, its AdamW state and the reference, in bytes (for the memory plan)."""
    moments = [v for state in trainer.optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    reference = list(trainer.reference.parameters()) if trainer.reference is not None else []
    sizes = {"parameters": local_bytes(trainer.model.parameters()), "optimizer": local_bytes(moments), "reference": local_bytes(reference)}
    path.write_text(json.dumps(sizes))


def snapshot(trainer: MGPOTrainer, path: Path) -> None:
    """Every process gathers; the main one writes the full weights, optimizer state and step."""
    state = {"model": full_model_state(trainer.model), "optimizer": full_optimizer_state(trainer.model, trainer.optimizer), "step": trainer.step}
    if trainer.accelerator.is_main_process:
        torch.save(state, path)


def main() -> None:
    config = MGPOConfig.load(Path(sys.argv[1]))
    for run in sys.argv[2:]:
        output, _, checkpoint = run.partition("=")
        trainer = MGPOTrainer(dataclasses.replace(config, output_dir=output))
        if checkpoint:
            if trainer.accelerator.is_main_process:
                shutil.copytree(checkpoint, Path(output) / "checkpoints" / Path(checkpoint).name)
            trainer.accelerator.wait_for_everyone()
            trainer.load_checkpoint()
            snapshot(trainer, Path(output) / "resumed.pt")
        trainer.train(progress=False)
        held(trainer, Path(output) / f"held-rank{trainer.rank}.json")
        snapshot(trainer, Path(output) / "final.pt")
        trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":  # never on import (pytest imports modules for doctests)
    main()
