"""RL on the free-form task: MGPO and the baselines that could win without grounding.

Every method starts from the same checkpoint with the same trainer settings and sample
budget (``group_size`` x ``prompts_per_step`` episodes a step); only what plays turn 1 and
what the model sees differ:

* ``mgpo``: two turns, the model's own box; every image at ``IMAGE_TOKENS`` visual tokens.
* ``grpo-equal-tokens``: one turn on the view alone, at ``EQUAL_TOKEN_VIEW_TOKENS`` (the view
  plus a crop of an MGPO episode).
* ``random-box``: two turns, turn 1 a random free-form box
  (:func:`mgpo_env.scripted_turn.random_box`); only the answer turn learns.
* ``fixed-box``: two turns, turn 1 the same box on every image (``fixed:x1,y1,x2,y2`` in view
  pixels, e.g. from :mod:`emergence.fixed_box_search`); only the answer turn learns.
* ``oracle``: two turns, turn 1 the smallest valid box around the target: the upper bound.

Held-out evaluations (greedy, the trainer's own, with the method's turn-1 rule) run before
training, every ``eval_every`` steps and after; each is summarised with tight hits under
:data:`~emergence.freeform_task.HIT_CAP` into ``evals.jsonl``.

    python benchmarks/emergence.py freeform-rl --method mgpo --checkpoint CKPT --output outputs/freeform-rl
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from mgpo_agents.evaluation import summarise
from mgpo_tools.metrics import read_metrics

from .experiment import REPOSITORY_ROOT, RLSettings, greedy_evaluation, rl_config, trainer_inputs
from .fixed_box_search import candidate_boxes, fixed_rule, interpolated_reader, screen
from .freeform_supervised import CANVAS, CHECK_SEED, TRAIN_SEED, VIEW, freeform_env
from .freeform_task import EQUAL_TOKEN_VIEW_TOKENS, FREEFORM_TASK, HIT_CAP, IMAGE_TOKENS, image_budget
from .leak_sweep import crop_ratios

COMMITTED_SWEEP = REPOSITORY_ROOT / "benchmarks" / "results" / "emergence_leak_sweep.json"

# method -> (protocol, turn-1 rule ("" = the model's own), visual tokens of every image)
METHODS: dict[str, tuple[str, str, int]] = {
    "mgpo": ("two_turn", "", IMAGE_TOKENS),
    "grpo-equal-tokens": ("single_turn", "", EQUAL_TOKEN_VIEW_TOKENS),
    "random-box": ("two_turn", "random", IMAGE_TOKENS),
    "fixed-box": ("two_turn", "fixed", IMAGE_TOKENS),
    "oracle": ("two_turn", "oracle", IMAGE_TOKENS),
}


@dataclass
class FreeformRLSettings(RLSettings):
    """One RL run's settings, the same for every method: the cell version's, with groups of 16 over 2
    questions a step (they kept the box format best, probes rounds 12-13), a low learning rate and
    nucleus sampling at 0.7 (at top_p 1.0 four sampled boxes in ten slip a digit; probes round 15)."""

    steps: int = 60
    group_size: int = 16
    prompts_per_step: int = 2
    learning_rate: float = 3e-5
    top_p: float = 0.7
    eval_every: int = 30
    eval_questions: int = 100
    eval_seed: int = CHECK_SEED
    threads: int = 1


def method_config(checkpoint: Path, method: str, seed: int, settings: FreeformRLSettings, output_dir: Path, fixed_box: Optional[str] = None) -> Any:
    """The trainer config of one run of ``method`` (``fixed_box``: the fixed-box method's ``fixed:...`` rule)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    protocol, rule, tokens = METHODS[method]
    if rule == "fixed":
        if not fixed_box or not fixed_box.startswith("fixed:"):
            raise ValueError(f"the fixed-box method needs its box as 'fixed:x1,y1,x2,y2', got {fixed_box!r}")
        rule = fixed_box
    evaluation = {"num_samples": settings.eval_questions, "seed": settings.eval_seed, **FREEFORM_TASK}
    return rl_config(checkpoint, protocol, seed, settings, output_dir, task_kwargs=FREEFORM_TASK, budget=image_budget(tokens), threads=settings.threads,
                     first_turn=rule, eval_dataset="synthetic", eval_dataset_kwargs=evaluation, eval_every=settings.eval_every, top_p=settings.top_p)


def held_out_row(output_dir: Path, label: str, step: int) -> dict[str, Any]:
    """The trainer's evaluation rows of ``label`` at ``step``, summarised with tight hits under HIT_CAP."""
    path = output_dir / "eval" / f"{label}-step{step}.jsonl"
    rows = read_metrics(path)
    summary = summarise(rows, max_side_ratio=HIT_CAP)
    keys = ("accuracy", "accuracy_per_category", "valid_box_rate", "hit_rate", "tight_hit_rate", "mean_iou", "median_area_ratio", "episodes")
    return {"step": step, **{k: summary[k] for k in keys}}


def run_method(checkpoint: Path, method: str, seed: int, settings: FreeformRLSettings, output_dir: Path,
               fixed_box: Optional[str] = None, progress: bool = True) -> list[dict[str, Any]]:
    """Train ``method`` from ``checkpoint``; held-out rows before, every ``eval_every`` steps and after (``evals.jsonl``)."""
    from mgpo_agents.trainer import MGPOTrainer

    torch.set_num_threads(settings.threads)
    shutil.rmtree(output_dir, ignore_errors=True)
    trainer = MGPOTrainer(method_config(checkpoint, method, seed, settings, output_dir, fixed_box), **trainer_inputs(checkpoint))
    trainer.evaluate("before")
    trainer.train(settings.steps, progress=progress)
    trainer.evaluate("after")
    labels = {0: "before", settings.steps: "after"}
    labels.update({s: f"step{s}" for s in range(settings.eval_every, settings.steps, settings.eval_every) if settings.eval_every})
    evals = [{"method": method, "seed": seed, **held_out_row(output_dir, label, step)} for step, label in sorted(labels.items())]
    (output_dir / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    for e in evals:
        print(f"[{method} seed {seed}] step {e['step']}: accuracy {e['accuracy']:.3f}, valid {e['valid_box_rate']:.2f}, "
              f"tight hits {e['tight_hit_rate']:.3f}, IoU {e['mean_iou']:.3f}, median area {e['median_area_ratio']}", flush=True)
    return evals


def best_fixed_box(checkpoint: Path, questions: int = 100, confirm: int = 5, sweep_path: Path = COMMITTED_SWEEP) -> dict[str, Any]:
    """The best image-independent turn-1 box for the free-form task, found on training questions only.

    Screens every square of :func:`~emergence.fixed_box_search.candidate_boxes` (sides from the
    smallest valid box to the whole view) against the training questions' targets, with the leak
    sweep's pixel classifier (mean over question types) as the reader; then plays the ``confirm``
    best with the model at ``checkpoint`` (greedy, ``questions`` training questions) and keeps the
    most accurate. Returns the rule (``fixed:x1,y1,x2,y2``) and both passes' scores.
    """
    from mgpo_agents.qwen_processor import load_model
    from mgpo_datasets.synthetic import SyntheticTask
    from mgpo_env.scripted_turn import ScriptedFirstTurn

    from .position_code import load_task_processor

    sweep = json.loads(Path(sweep_path).read_text())
    curves = [crop_ratios(result["accuracy"]) for result in sweep["results"]]
    chance = sum(result["chance"] for result in sweep["results"]) / len(curves)
    reader = interpolated_reader({ratio: sum(c[ratio] for c in curves) / len(curves) for ratio in curves[0]}, chance)
    task = SyntheticTask(questions, seed=TRAIN_SEED, **FREEFORM_TASK)
    sides = sorted({29, 40, 48, 56, 64, 72, 88, 112, 160, 224, VIEW[0]})
    screened = screen([task[i].target_boxes[0] for i in range(questions)], (CANVAS, CANVAS), VIEW, reader, chance,
                      candidate_boxes(VIEW[0], sides=sides, positions=13))
    model, processor = load_model(checkpoint), load_task_processor(checkpoint)
    confirmed = []
    for expected, box in screened[:confirm]:
        rule = fixed_rule(box)
        summary = greedy_evaluation(model, processor, lambda: ScriptedFirstTurn(freeform_env(task), rule), range(questions))
        confirmed.append({"rule": rule, "expected": round(expected, 3), "accuracy": round(summary["accuracy"], 3)})
    best = max(confirmed, key=lambda c: c["accuracy"])
    return {"rule": best["rule"], "questions": questions, "confirmed": confirmed,
            "screened_top": [{"box": list(b), "expected": round(e, 3)} for e, b in screened[:20]]}
