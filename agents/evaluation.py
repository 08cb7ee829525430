"""Evaluation: greedy episodes over a dataset, accuracy per category and grounding quality.

Grounding is measured where the data has annotated boxes: the *hit rate* is
the share of episodes whose crop contains the whole annotated box, and the
IoU compares the crop with it (0 for a missing or invalid box). Each row also
gives the crop's size against the target's (``side_ratio``, ``area_ratio``), so
:func:`summarise` can count *tight* hits (the crop holds the target and is at
most a given multiple of its side) and report the median box area over target area.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym

from mgpo_env.geometry import box_area, contains, iou, side_ratio, tight_hit

from .rollout import RolloutEngine
from .trajectory import Trajectory


def episode_row(trajectory: Trajectory) -> dict[str, Any]:
    """One JSON-serialisable result row for an evaluated episode."""
    info = trajectory.info
    crop, target = info.get("crop_box"), info.get("target_box")
    return {
        "sample_id": info.get("sample_id"),
        "category": info.get("category"),
        "reward": trajectory.reward,
        "correct": bool(info.get("correct")),
        "answer": info.get("answer"),
        "box_valid": bool(info.get("box_valid")),
        "crop_box": list(crop) if crop else None,
        "target_box": list(target) if target else None,
        "hit": bool(crop and target and contains(crop, target)),
        "iou": iou(crop, target) if crop and target else (0.0 if target else None),
        "side_ratio": side_ratio(crop, target) if crop and target else None,
        "area_ratio": box_area(crop) / box_area(target) if crop and target and box_area(target) > 0 else None,
        "visual_tokens": info.get("visual_tokens_total"),
        "replies": trajectory.replies,
    }


def summarise(rows: Sequence[dict[str, Any]], max_side_ratio: Optional[float] = None) -> dict[str, Any]:
    """Accuracy overall and per category, valid-box rate, hit rate, mean IoU and median area ratio.

    With ``max_side_ratio``, also ``tight_hit_rate``: the share of annotated episodes whose crop
    holds the target and is at most ``max_side_ratio`` x its side (a missing crop is a miss).
    ``median_area_ratio`` is over the episodes with a crop and a target (None if there are none).
    """
    per_category: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        per_category[str(row["category"])].append(row["correct"])
    with_target = [r for r in rows if r["target_box"] is not None]
    n = max(len(rows), 1)
    return {
        "episodes": len(rows),
        "accuracy": sum(r["correct"] for r in rows) / n,
        "accuracy_per_category": {k: sum(v) / len(v) for k, v in sorted(per_category.items())},
        "valid_box_rate": sum(r["box_valid"] for r in rows) / n,
        "hit_rate": _mean([r["hit"] for r in with_target]),
        "mean_iou": _mean([r["iou"] for r in with_target]),
        "annotated_episodes": len(with_target),
        "median_area_ratio": _median([r["area_ratio"] for r in with_target if r.get("area_ratio") is not None]),
        **(
            {
                "tight_hit_rate": _mean([bool(r["crop_box"]) and tight_hit(r["crop_box"], r["target_box"], max_side_ratio) for r in with_target]),
                "max_side_ratio": max_side_ratio,
            }
            if max_side_ratio is not None
            else {}
        ),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _median(values: Sequence[float]) -> Optional[float]:
    return float(statistics.median(values)) if values else None


def evaluate(
    engine: RolloutEngine,
    indices: Sequence[int],
    *,
    batch_questions: int = 16,
    greedy: bool = True,
    output: Optional[Path] = None,
    on_episode_end: Optional[Callable[[gym.Env, Trajectory], None]] = None,
    progress: bool = True,
    on_first_batch: Optional[Callable[[int, float], None]] = None,
) -> dict[str, Any]:
    """Play one episode per index (greedy by default) and summarise; rows go to ``output`` JSONL.

    ``on_first_batch(questions, seconds)`` is called once the first batch is done, e.g. to estimate the rest.
    """
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    handle = open(output, "w") if output is not None else None
    started = time.perf_counter()
    try:
        with tqdm(total=len(indices), desc="eval", disable=not progress, dynamic_ncols=True) as bar:
            for start in range(0, len(indices), batch_questions):
                chunk = list(indices[start : start + batch_questions])
                result = engine.run(chunk, group_size=1, greedy=greedy, step=0, group_ids=range(start, start + len(chunk)), on_episode_end=on_episode_end)
                for trajectory in result.trajectories:
                    row = episode_row(trajectory)
                    rows.append(row)
                    if handle is not None:
                        handle.write(json.dumps(row) + "\n")
                        handle.flush()
                bar.update(len(chunk))
                if start == 0 and on_first_batch is not None:
                    on_first_batch(len(chunk), time.perf_counter() - started)
    finally:
        if handle is not None:
            handle.close()
    return summarise(rows)


def time_estimate(total: int, done: int, seconds: float) -> str:
    """How long ``total`` questions take at the rate of the first ``done``, in words.

    >>> time_estimate(1000, 16, 48.0)
    'about 50 min for all 1000 questions (3.0 s a question)'
    """
    per_question = seconds / max(done, 1)
    remaining = per_question * total
    span = f"{remaining / 3600:.1f} h" if remaining >= 5400 else f"{remaining / 60:.0f} min" if remaining >= 90 else f"{remaining:.0f} s"
    return f"about {span} for all {total} questions ({per_question:.1f} s a question)"


def recorder(store: Any, **record_kwargs: Any) -> Callable[[gym.Env, Trajectory], None]:
    """The ``on_episode_end`` callback that adds each finished episode to ``store`` (an ``EpisodeStore``).

    ``record_kwargs`` go to :func:`mgpo_tools.recording.record_from_env` (``split``, ``step``, ``extra``).
    """
    from mgpo_tools.recording import record_from_env

    return lambda env, trajectory: store.add(record_from_env(env, **record_kwargs))


def evaluate_trainer(trainer: Any, label: str) -> dict[str, Any]:
    """Evaluate a trainer's current policy on its config's evaluation set (greedy)."""
    from mgpo_datasets.registry import resolve_dataset
    from mgpo_env.image_store import ImageStore

    from .trainer import env_factory

    config = trainer.config
    dataset = resolve_dataset(config.eval_dataset, **config.eval_dataset_kwargs)
    engine = RolloutEngine(
        trainer.accelerator.unwrap_model(trainer.model),
        trainer.processor,
        env_factory(config, dataset, ImageStore()),
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )
    count = min(len(dataset), config.eval_samples) if config.eval_samples else len(dataset)
    trainer.model.eval()
    out_dir = Path(config.output_dir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    store_episode = recorder(trainer.episode_store, step=trainer.step, split="eval", extra={"label": label}) if config.save_eval_episodes else None
    summary = evaluate(engine, list(range(count)), output=out_dir / f"{label}-step{trainer.step}.jsonl", progress=False, on_episode_end=store_episode)
    summary.update(step=trainer.step, label=label)
    with open(out_dir / "summary.jsonl", "a") as f:
        f.write(json.dumps(summary) + "\n")
    return summary
