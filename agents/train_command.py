"""``mgpo train``: MGPO (or the GRPO baseline) from the command line.

Every config field is a flag (``mgpo train --help``); ``--preset`` picks the
starting values and ``--resume`` continues the run in ``--output-dir`` from its
latest checkpoint, exactly where it stopped. A requeued job runs the same command
line: with no checkpoint yet, ``--resume`` starts from the beginning and says so.

SIGTERM or SIGINT (SLURM, Kubernetes, Ctrl-C) ends the current step, writes a
checkpoint and exits with code 75; unreadable samples, non-finite updates and a
failed checkpoint write stop the run with a message and the codes listed in
:mod:`mgpo_agents.faults`, the last good checkpoint intact.

Several processes: ``accelerate launch --num_processes 2 -m mgpo_agents.train_command ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from mgpo_datasets.sample import DataError

from .config import add_config_arguments, config_from_args
from .faults import EXIT_BAD_DATA, TrainingStopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--output", dest="output_dir", default=None, help="alias of --output-dir")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in the output folder (none yet: start from the beginning)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print each process's memory for parameters, gradients, optimizer state and reference model "
        "(the model built on the meta device: no weights loaded), then exit without training",
    )
    parser.add_argument(
        "--world-size", "--num-processes", dest="world_size", type=int, default=None, metavar="N",
        help="processes the --dry-run plan is for (default: $WORLD_SIZE, else 1)",
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.dry_run:
        return _print_memory_plan(config, args.world_size)
    from .sharding import LaunchError, is_sharded
    from .trainer import MGPOTrainer, latest_checkpoint

    if not args.resume and latest_checkpoint(Path(config.output_dir)) is not None:
        print(f"mgpo train: {config.output_dir} already holds checkpoints; pass --resume to continue, or choose another --output-dir", file=sys.stderr)
        return 2
    try:
        trainer = MGPOTrainer(config)
    except (FileNotFoundError, LaunchError) as error:  # a model folder that is not there, a launch without its processes: say so
        print(f"mgpo train: {error}", file=sys.stderr)
        return 2
    except DataError as error:  # a dataset file the loader refuses
        print(f"mgpo train: {error}", file=sys.stderr)
        return EXIT_BAD_DATA
    main_process = trainer.accelerator.is_main_process
    evaluating = bool(config.eval_dataset) and (main_process or is_sharded(trainer.model))  # FSDP: all processes gather the weights
    if args.resume:
        if latest_checkpoint(Path(config.output_dir)) is None:
            if main_process:
                print(f"mgpo train: no checkpoint in {Path(config.output_dir) / 'checkpoints'} yet (the run stopped before its first one); "
                      "starting from the beginning")
        else:
            path = trainer.load_checkpoint()
            if main_process:
                print(f"resumed from {path} at step {trainer.step}")
    output = Path(config.output_dir)
    try:
        before = _evaluate(trainer, "before") if evaluating and trainer.step == 0 else None
        trainer.train(progress=not args.no_progress)
        after = _evaluate(trainer, "after") if evaluating else None
    except TrainingStopped as stop:
        if main_process:  # the others stop for the same reason at the same step
            print(f"mgpo train: {stop}", file=sys.stderr)
        return stop.exit_code
    except DataError as error:  # an unreadable evaluation sample (training samples are the policy's)
        print(f"mgpo train: {error}; the dataset was not changed (--on-bad-sample skip leaves such training samples out)", file=sys.stderr)
        return EXIT_BAD_DATA
    if not main_process:
        return 0
    if before is None and after is not None:
        before = _first_evaluation(output)
    paths = {"metrics": output / "metrics.jsonl", "curves": output / "curves.png"}
    if config.report:
        from mgpo_tools.report import ReportOptions, build_report

        build_report(output, output / "report.html", ReportOptions(title=f"mgpo train: {output}", workers=min(4, os.cpu_count() or 1)))
        paths["report"] = output / "report.html"
    if after is not None:
        print(before_after_table(before, after))
    for name, path in paths.items():
        print(f"{name + ':':9}{path}")
    return 0


def _print_memory_plan(config: Any, world_size: Optional[int]) -> int:
    from .memory_plan import memory_plan
    from .sharding import launched_world_size

    path = Path(config.model).expanduser()
    if not (path / "config.json").exists():
        print(f"mgpo train --dry-run: {config.model!r} is not a model folder with a config.json; give one with --model DIR", file=sys.stderr)
        return 2
    world = world_size if world_size is not None else launched_world_size() or 1
    try:
        print(memory_plan(config, world, path).render())
    except ValueError as error:
        print(f"mgpo train --dry-run: {error}", file=sys.stderr)
        return 2
    return 0


def _evaluate(trainer: Any, label: str) -> dict[str, Any]:
    summary = trainer.evaluate(label)
    if not summary:  # a helping process under FSDP
        return summary
    print(f"evaluation ({label}, step {trainer.step}): accuracy {summary['accuracy']:.3f}, valid box rate {summary['valid_box_rate']:.3f}, hit rate {summary['hit_rate']:.3f}")
    return summary


def _first_evaluation(output: Path) -> Optional[dict[str, Any]]:
    """The run's first held-out evaluation on disk (a resumed run's "before")."""
    from mgpo_tools.metrics import read_metrics

    summaries = read_metrics(output / "eval" / "summary.jsonl", missing_ok=True)
    return summaries[0] if summaries else None


def before_after_table(before: Optional[dict[str, Any]], after: dict[str, Any]) -> str:
    """Held-out figures before and after training, one line each.

    >>> print(before_after_table({"step": 0, "accuracy": 0.4, "hit_rate": 0.25, "valid_box_rate": 1.0, "mean_iou": 0.1, "episodes": 200},
    ...                          {"step": 40, "accuracy": 0.75, "hit_rate": 0.7, "valid_box_rate": 1.0, "mean_iou": 0.2, "episodes": 200}))
    held-out (200 questions)   step 0   step 40
    accuracy                    0.400 ->  0.750  (+0.350)
    crop hit rate               0.250 ->  0.700  (+0.450)
    valid-box rate              1.000 ->  1.000  (+0.000)
    mean IoU                    0.100 ->  0.200  (+0.100)
    """
    rows = [("accuracy", "accuracy"), ("crop hit rate", "hit_rate"), ("valid-box rate", "valid_box_rate"), ("mean IoU", "mean_iou")]
    start = f"step {before['step']}" if before else "before"
    lines = [f"{'held-out (' + str(after['episodes']) + ' questions)':26} {start:>7}   step {after['step']}"]
    for name, key in rows:
        old = before.get(key, float("nan")) if before else float("nan")
        new = after.get(key, float("nan"))
        lines.append(f"{name:26} {old:7.3f} -> {new:6.3f}  ({new - old:+.3f})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mgpo train", description="Train with MGPO")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
