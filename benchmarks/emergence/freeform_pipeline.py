"""The free-form task's supervised pipeline in one command: a fresh tiny model, then the base stages in order.

    python benchmarks/emergence.py supervised --base-seeds 0 1

Each stage is one run of :func:`~emergence.freeform_supervised.train_freeform_base` with its
own settings (:data:`RECIPE`), starting from the last check of the stage before. The first
starts from :func:`~emergence.experiment.build_base_model`'s random weights: nothing comes from
the cell version, whose warm-start saw only four fixed boxes. A stage that names no
``start_level`` carries on at the reading level where the stage before left off.

A rerun resumes: finished stages are kept and the unfinished one resumes from its last check
(only with the same weights and settings; see
:func:`~emergence.freeform_supervised.resume_conflict`). The result is ``<output>/checkpoint``
(``supervised`` gives each base seed its own ``<output>``, ``seed-<s>``) with ``stage.json``: the
recipe, every stage's checks, the held-out summary of greedy episodes (``held_out``) and the
software used.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .experiment import build_base_model, software_record
from .freeform_supervised import CHECK_SEED, FreeformBaseSettings, episode_summary, plot_base_log, train_freeform_base

RECIPE: tuple[tuple[str, dict[str, Any]], ...] = (
    # Read and box from scratch: reading crops up to 1.2x the target's side, so that the answer turn
    # learns to read before it must read wide crops; grounding rows teach the box syntax and where.
    ("read", dict(steps=400, reading_rows=16, grounding_rows=12, guessing_rows=4, learning_rate=5e-4, reading_most=1.2)),
    # Reading alone through the curriculum's levels (the probes' fb3: the levels passed in 300 steps, where the
    # mix above had stayed at level 0 for 600 with crops to 1.8x).
    ("focus", dict(steps=300, reading_rows=28, grounding_rows=0, guessing_rows=4, learning_rate=5e-4, reading_most=1.2)),
    # Where things are, on easy canvases: one large named shape, no clutter, tight free-form boxes. From random
    # weights, grounding on the task's cluttered canvases stayed at IoU 0.02 through 550 steps of the mix (the
    # lineage began from weights that had learnt where things are on easy data, as the cell version's stage 1a).
    ("bootstrap", dict(steps=600, reading_rows=8, grounding_rows=20, guessing_rows=4, learning_rate=5e-4, reading_most=1.2,
                       grounding_clutter=0, grounding_sizes=[200, 600])),
    # Reading crops up to 1.6x while grounding moves to the task's cluttered canvases (the probes' p2b and p3).
    ("ground", dict(steps=350, reading_rows=16, grounding_rows=12, guessing_rows=4, learning_rate=5e-4, reading_most=1.6)),
    # A lower learning rate settles the boxes (the probes' q1: grounding IoU 0.31 -> 0.38).
    ("settle", dict(steps=150, reading_rows=16, grounding_rows=12, guessing_rows=4, learning_rate=1.5e-4, reading_most=1.3)),
    # Wide reading: crops to 1.8x, the curriculum restarted at level 2 and gated on a centred 1.6x box
    # (the probes' w2: 1.6x box read at 0.97 / 0.77, was 0.41 / 0.39).
    ("wide", dict(steps=800, reading_rows=24, grounding_rows=4, guessing_rows=4, learning_rate=3e-4, reading_most=1.8,
                  gate_ratio=1.6, start_level=2)),
)
"""The stages in order: (name, :class:`FreeformBaseSettings` fields). ``seed`` and ``threads`` come from the run."""

SUMMARY_QUESTIONS = 100


def stage_settings(fields: dict[str, Any], seed: int, threads: int, level: int) -> FreeformBaseSettings:
    """A stage's settings: its own fields, the run's seed and threads, and ``level`` unless it names a start level.

    >>> stage_settings({"steps": 5}, seed=1, threads=2, level=3).start_level
    3
    >>> stage_settings({"steps": 5, "start_level": 2}, seed=1, threads=2, level=3).start_level
    2
    """
    return FreeformBaseSettings(**{"start_level": level, **fields, "seed": seed, "threads": threads})


def last_weights(stage_dir: Path, log: Sequence[dict[str, Any]]) -> Path:
    return stage_dir / f"step-{log[-1]['step']}"


def run_pipeline(output: Path, seed: int = 0, threads: int = 1, recipe: Sequence[tuple[str, dict[str, Any]]] = RECIPE,
                 summary_questions: int = SUMMARY_QUESTIONS, progress: bool = True) -> Path:
    """Build (or resume) the base for ``seed`` in ``output``; returns the checkpoint's path."""
    if not recipe:
        raise ValueError("the recipe has no stages")
    names = [name for name, _ in recipe]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must differ, got {names}")
    torch.set_num_threads(threads)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    weights = output / "init"
    if not (weights / "config.json").exists():
        build_base_model(weights, seed=seed)
    level, lineage = 0, []
    for name, fields in recipe:
        settings = stage_settings(fields, seed, threads, level)
        print(f"[supervised] seed {seed}, stage {name}: {json.dumps(asdict(settings))}", flush=True)
        log = train_freeform_base(output / name, weights, settings, progress=progress)
        weights, level = last_weights(output / name, log), log[-1]["level_next"]
        lineage.append({"run": name, "steps": log[-1]["step"], "settings": asdict(settings), "checks": log})
    checkpoint = output / "checkpoint"
    shutil.rmtree(checkpoint, ignore_errors=True)
    shutil.copytree(weights, checkpoint)
    record = stage_record(checkpoint, seed, lineage, summary_questions, time.perf_counter() - started)
    (checkpoint / "stage.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_lineage(lineage, output / "curves.png")
    print(f"[supervised] seed {seed}: {checkpoint} ({json.dumps(record['held_out'])})", flush=True)
    return checkpoint


def stage_record(checkpoint: Path, seed: int, lineage: list[dict[str, Any]], questions: int, seconds: float) -> dict[str, Any]:
    from mgpo_agents.qwen_processor import load_model
    from mgpo_datasets.synthetic import SyntheticTask

    from .freeform_task import FREEFORM_TASK
    from .position_code import load_task_processor

    model, processor = load_model(checkpoint), load_task_processor(checkpoint)
    summary = episode_summary(model, processor, SyntheticTask(questions, seed=CHECK_SEED, **FREEFORM_TASK), range(questions))
    return {
        "what": "base abilities for the free-form task from random weights (reading up to 1.8x crops, grounding on task canvases, "
                "random turn-1 boxes shown in every task row)",
        "command": f"python benchmarks/emergence.py supervised --base-seeds {seed}",
        "seed": seed,
        "seconds_this_call": round(seconds, 1),
        "software": software_record(),
        "held_out": {"what": f"greedy episodes, nothing forced, {questions} questions of probe seed {CHECK_SEED}", **summary},
        "last_check": lineage[-1]["checks"][-1],
        "lineage": lineage,
    }


def joined_log(lineage: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every stage's checks on one step axis. A stage's step-0 check measures the weights the stage before ended
    with, so only the first stage's is kept (one that starts at another reading level measures that level there).

    >>> joined_log([{"checks": [{"step": 0}, {"step": 50}]}, {"checks": [{"step": 0}, {"step": 20}]}])
    [{'step': 0}, {'step': 50}, {'step': 70}]
    """
    joined: list[dict[str, Any]] = []
    offset = 0
    for stage in lineage:
        checks = stage["checks"] if not joined else [c for c in stage["checks"] if c["step"] > 0]
        joined += [{**c, "step": c["step"] + offset} for c in checks]
        offset = joined[-1]["step"] if joined else 0
    return joined


def plot_lineage(lineage: Sequence[dict[str, Any]], path: Path) -> Optional[Path]:
    return plot_base_log(joined_log(lineage), path) if lineage else None
