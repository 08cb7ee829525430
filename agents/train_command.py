"""``mgpo train``: MGPO (or the GRPO baseline) from the command line.

Every config field is a flag (``mgpo train --help``); ``--preset`` picks the
starting values and ``--resume`` continues the run in ``--output-dir`` from its
latest checkpoint, exactly where it stopped.

Several processes: ``accelerate launch --num_processes 2 -m mgpo_agents.train_command ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--output", dest="output_dir", default=None, help="alias of --output-dir")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from .trainer import MGPOTrainer, latest_checkpoint

    if not args.resume and latest_checkpoint(Path(config.output_dir)) is not None:
        print(f"mgpo train: {config.output_dir} already holds checkpoints; pass --resume to continue, or choose another --output-dir", file=sys.stderr)
        return 2
    trainer = MGPOTrainer(config)
    if args.resume:
        path = trainer.load_checkpoint()
        if trainer.accelerator.is_main_process:
            print(f"resumed from {path} at step {trainer.step}")
    if trainer.accelerator.is_main_process and config.eval_dataset and trainer.step == 0:
        _evaluate(trainer, "before")
    trainer.train(progress=not args.no_progress)
    if trainer.accelerator.is_main_process:
        if config.eval_dataset:
            _evaluate(trainer, "after")
        print(f"metrics: {Path(config.output_dir) / 'metrics.jsonl'}\nplot: {Path(config.output_dir) / 'curves.png'}")
    return 0


def _evaluate(trainer: "object", label: str) -> None:
    from .evaluation import evaluate_trainer

    summary = evaluate_trainer(trainer, label)  # type: ignore[arg-type]
    print(f"evaluation ({label}): accuracy {summary['accuracy']:.3f}, valid box rate {summary['valid_box_rate']:.3f}, hit rate {summary['hit_rate']:.3f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mgpo train", description="Train with MGPO")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
