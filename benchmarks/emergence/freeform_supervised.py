"""Base abilities for the free-form task, every image at 128 visual tokens: read, box, guess.

The stand-in for a VLM's pretraining on the free-form task (:mod:`emergence.freeform_task`).
Every training row is a token-exact scripted episode
(:func:`mgpo_agents.supervised.scripted_trajectory`) of one of three kinds:

* **reading**: a task question at the reading curriculum's current level
  (:data:`~emergence.reading_curriculum.READING_LEVELS`). The environment crops a box that
  holds the target (:func:`~emergence.reading_curriculum.reading_crop`: from the smallest
  valid box up to ``reading_most`` x the target's side), while the conversation *shows* a
  random free-form box (:func:`mgpo_env.scripted_turn.random_box`: log-uniform sides,
  independent of the image); only the answer carries loss. No row pairs the target's
  position with any text.
* **grounding**: one named solid shape on the task's own canvas and clutter
  (:class:`~emergence.grounding_task.TaskCanvasGrounding`; nothing framed, patterned or
  black), asked in generic phrasings; the reply is the smallest valid box around the shape,
  grown ``grounding_margin`` x about its centre, so that a digit one off still gives a
  valid box. Loss on the box. Shapes of 120-480 pixels give boxes of every size.
* **guessing**: a task question at its own noise whose turn 1 is a random free-form box
  that the environment really crops; loss on the answer. Where the crop misses the target
  the answer cannot be read, so this calibrates the answer turn: a reader trained on tight
  crops alone answers *below* chance after a miss, and RL then learns to drop the box
  (probes, eleventh round).

The reading level moves on once held-out reading at that level reaches ``level_gate``.
Every ``check_every`` steps the run measures, greedily on held-out questions, and appends a
line to ``log.jsonl``: reading per question type on the task itself with turn 1 forced to
the smallest valid box and to a centred box of 1.6x the target's side; grounding IoU and
hold rate; and the task's own turn 1 with nothing forced (valid boxes, holds, tight hits
under :data:`~emergence.freeform_task.HIT_CAP`, IoU, median box area over target area,
accuracy). The weights of each check are kept (``step-<n>/``), and a rerun resumes from the
last one.

    python benchmarks/emergence.py freeform-base --output outputs/freeform-base
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from mgpo_agents.evaluation import episode_row, summarise
from mgpo_agents.qwen_processor import load_model
from mgpo_agents.supervised import fit, scripted_trajectory
from mgpo_agents.trajectory import ConversationTokenizer, Trajectory
from mgpo_datasets.synthetic import SyntheticTask
from mgpo_env.image_store import ImageStore
from mgpo_env.scripted_turn import box_reply, oracle_box, random_box

from .experiment import GROUNDING_EVAL_SEED as GROUNDING_CHECK_SEED
from .experiment import GROUNDING_SEED, RUN_THREADS, TRAIN_SEED, _save, greedy_evaluation, make_env
from .freeform_task import FREEFORM_TASK, HIT_CAP, image_budget
from .grounding_task import TaskCanvasGrounding
from .leak_sweep import crop_reply
from .position_code import load_task_processor
from .reading_curriculum import READING_LEVELS, GatedLevels, level_task, option_answer, reading_crop

# The held-out checks' task seed (the miniature's training and grounding seeds are shared with the
# cell version). It is a probe seed: the RL comparison's final evaluation uses a seed no stage uses.
CHECK_SEED = 21

CANVAS = FREEFORM_TASK["canvas_size"]
VIEW = image_budget().view_size((CANVAS, CANVAS))  # (308, 308): the view and the largest crop, at 128 tokens


def freeform_env(dataset: Any, protocol: str = "two_turn", store: Optional[ImageStore] = None) -> Any:
    """The miniature's environment with every image at the free-form task's budget."""
    return make_env(dataset, protocol, store=store, budget=image_budget())


def grown_box(box: Sequence[float], factor: float, view: tuple[int, int]) -> tuple[int, int, int, int]:
    """``box`` (view pixels) grown ``factor`` x about its centre, rounded outwards, shifted back inside the view.

    >>> grown_box((100, 100, 140, 140), 1.5, (308, 308))
    (90, 90, 150, 150)
    >>> grown_box((0, 0, 40, 40), 1.5, (308, 308))  # shifted back inside, not cut
    (0, 0, 60, 60)
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    out: list[int] = []
    for lo, hi, limit in ((x1, x2, view[0]), (y1, y2, view[1])):
        centre, half = (lo + hi) / 2, min(limit, (hi - lo) * factor) / 2
        a, b = int(np.floor(centre - half)), int(np.ceil(centre + half))
        if a < 0:
            a, b = 0, b - a
        if b > limit:
            a, b = max(0, a - (b - limit)), limit
        out += [a, b]
    return out[0], out[2], out[1], out[3]


def grounding_set(count: int, seed: int, clutter: Optional[int] = None, sizes: Optional[Sequence[int]] = None) -> TaskCanvasGrounding:
    """Grounding questions on the task's canvases, or on canvases with ``clutter`` shapes and named shapes of
    ``sizes`` = [smallest, largest] original pixels (the bootstrap's easy ones: no clutter, large shapes)."""
    canvas = FREEFORM_TASK if clutter is None else {**FREEFORM_TASK, "clutter": clutter}
    return TaskCanvasGrounding(count, seed=seed, task=canvas, **({} if sizes is None else {"object_size": tuple(sizes)}))


class FreeformRows:
    """Token-exact training rows of the three kinds (see the module docstring)."""

    def __init__(self, processor: Any, pool: int, reading_most: float, grounding_margin: float, seed: int = 0,
                 grounding_clutter: Optional[int] = None, grounding_sizes: Optional[Sequence[int]] = None) -> None:
        self.tokens = ConversationTokenizer(processor)
        self.store = ImageStore(256 * 2**20)
        self.pool, self.reading_most, self.grounding_margin = pool, reading_most, grounding_margin
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.task_env = freeform_env(SyntheticTask(pool, seed=TRAIN_SEED, **FREEFORM_TASK), store=self.store)
        self.grounding_env = freeform_env(grounding_set(pool, GROUNDING_SEED, grounding_clutter, grounding_sizes), store=self.store)
        self.level_env: Any = None

    def set_level(self, level: int) -> None:
        """Reading rows from now on come from ``level``'s task (same layouts and questions, another checker)."""
        self.level_env = freeform_env(level_task(level, self.pool, seed=TRAIN_SEED), store=self.store)

    def _random_reply(self) -> str:
        return box_reply(random_box(self.np_rng, VIEW), "pixel", VIEW)

    def reading(self, index: int) -> Trajectory:
        sample = self.level_env.unwrapped.dataset[index]
        acted = box_reply(reading_crop(sample.target_boxes[0], VIEW[0], CANVAS, self.rng, most=self.reading_most), "pixel", VIEW)
        return scripted_trajectory(self.tokens, self.level_env, index, [acted, option_answer(sample)], train_turns=[1], shown_replies=[self._random_reply(), None])

    def grounding(self, index: int) -> Trajectory:
        sample = self.grounding_env.unwrapped.dataset[index]
        box = grown_box(oracle_box(sample.target_boxes[0], VIEW, (CANVAS, CANVAS)), self.grounding_margin, VIEW)
        return scripted_trajectory(self.tokens, self.grounding_env, index, [box_reply(box, "pixel", VIEW)], train_turns=[0])

    def guessing(self, index: int) -> Trajectory:
        sample = self.task_env.unwrapped.dataset[index]
        return scripted_trajectory(self.tokens, self.task_env, index, [self._random_reply(), option_answer(sample)], train_turns=[1])


@dataclass
class FreeformBaseSettings:
    """What the stage trains on and how it is checked (the defaults are the committed run's)."""

    steps: int = 600
    reading_rows: int = 16  # rows of each kind in a batch
    grounding_rows: int = 12
    guessing_rows: int = 4
    learning_rate: float = 5e-4
    reading_most: float = 1.8  # reading crops go up to this multiple of the target's side
    grounding_margin: float = 1.15
    grounding_clutter: Optional[int] = None  # clutter shapes on the grounding canvases (None: the task's 30)
    grounding_sizes: Optional[list[int]] = None  # [smallest, largest] side of the named shape, original pixels (None: 120-480)
    level_gate: float = 0.8  # held-out reading at the current level that moves the curriculum on
    gate_ratio: Optional[float] = None  # where that reading is measured: None the smallest valid box, else a centred box this x the target
    start_level: int = 0
    pool: int = 4000  # questions of each dataset that rows are drawn from
    check_every: int = 50
    check_questions: int = 60
    seed: int = 0
    threads: int = RUN_THREADS  # torch threads (2 where the run has the machine to itself)


def reading_by_type(model: Any, processor: Any, task: SyntheticTask, indices: Sequence[int], ratio: Optional[float]) -> dict[str, float]:
    """Greedy accuracy per question type with turn 1 forced to the smallest valid box (``ratio`` None)
    or to a box of ``ratio`` x the target's side centred on it."""
    def forced(i: int) -> str:
        target = task[i].target_boxes[0]
        if ratio is None:
            return box_reply(oracle_box(target, VIEW, (CANVAS, CANVAS)), "pixel", VIEW)
        return crop_reply(target, ratio, (0.5, 0.5), (CANVAS, CANVAS), VIEW)

    summary = greedy_evaluation(model, processor, lambda: freeform_env(task), indices, forced_first=forced)
    return {k: round(v, 3) for k, v in summary["accuracy_per_category"].items()}


def vlm_reading_curves(checkpoint: Path, questions: int = 200) -> dict[str, Any]:
    """The weights at ``checkpoint`` as the leak sweep's second reader (:func:`~emergence.leak_sweep.vlm_sweep`):
    turn 1 forced to crops of each ratio, and single-turn episodes on the view at each baseline's budget."""
    from .leak_sweep import vlm_sweep

    model, processor = load_model(checkpoint), load_task_processor(checkpoint)

    def crops(model: Any, processor: Any, task: Any, indices: Sequence[int], forced: Any) -> dict[str, Any]:
        return greedy_evaluation(model, processor, lambda: freeform_env(task), indices, forced_first=forced)

    def views(model: Any, processor: Any, task: Any, indices: Sequence[int], budget: Any) -> dict[str, Any]:
        return greedy_evaluation(model, processor, lambda: make_env(task, "single_turn", budget=budget), indices)

    curves = vlm_sweep(model, processor, FREEFORM_TASK, crops, questions=questions, view_evaluate=views)
    return {"curves": curves, "checkpoint": str(checkpoint), "questions": questions}


def episode_summary(model: Any, processor: Any, dataset: Any, indices: Sequence[int]) -> dict[str, Any]:
    """Greedy episodes with nothing forced, summarised with tight hits under ``HIT_CAP``."""
    rows: list[dict[str, Any]] = []
    greedy_evaluation(model, processor, lambda: freeform_env(dataset), indices, on_episode_end=lambda env, t: rows.append(episode_row(t)))
    summary = summarise(rows, max_side_ratio=HIT_CAP)
    keys = ("accuracy", "valid_box_rate", "hit_rate", "tight_hit_rate", "mean_iou", "median_area_ratio")
    return {k: (round(summary[k], 3) if isinstance(summary[k], float) else summary[k]) for k in keys}


def check(model: Any, processor: Any, level: int, questions: int, gate_ratio: Optional[float] = None,
          grounding_canvas: Optional[tuple[Optional[int], Optional[Sequence[int]]]] = None) -> dict[str, Any]:
    """The held-out measurements of the module docstring (greedy; ``questions`` of each set); below the last
    level, also reading at the current level at the smallest box (``gate_ratio`` None) or a centred ``gate_ratio`` x box;
    with ``grounding_canvas`` = (clutter, sizes), also grounding on those canvases (``grounding_rows_canvas``)."""
    indices = range(questions)
    task = SyntheticTask(questions, seed=CHECK_SEED, **FREEFORM_TASK)
    row: dict[str, Any] = {
        "read_smallest": reading_by_type(model, processor, task, indices, None),
        "read_1.6x": reading_by_type(model, processor, task, indices, 1.6),
        "grounding": episode_summary(model, processor, TaskCanvasGrounding(questions, seed=GROUNDING_CHECK_SEED, task=FREEFORM_TASK), indices),
        "task_turn1": episode_summary(model, processor, task, indices),
    }
    if level < len(READING_LEVELS) - 1:
        at_level = level_task(level, questions, seed=CHECK_SEED)
        row[at_level_key(gate_ratio)] = reading_by_type(model, processor, at_level, indices, gate_ratio)
    if grounding_canvas is not None:
        row["grounding_rows_canvas"] = episode_summary(model, processor, grounding_set(questions, GROUNDING_CHECK_SEED, *grounding_canvas), indices)
    return row


def at_level_key(gate_ratio: Optional[float]) -> str:
    """The log key of reading at the current level.

    >>> at_level_key(None), at_level_key(1.6)
    ('read_smallest_at_level', 'read_1.6x_at_level')
    """
    return "read_smallest_at_level" if gate_ratio is None else f"read_{gate_ratio:g}x_at_level"


def base_curves(log: Sequence[dict[str, Any]]) -> dict[str, list[Optional[float]]]:
    """The log's curves by name (one value per check; None where a check lacks it), for :func:`plot_base_log`.

    >>> base_curves([{"step": 0, "level": 0, "read_smallest": {"colour": 0.5}, "grounding": {"mean_iou": 0.1}}])["reading colour, smallest box"]
    [0.5]
    """
    curves: dict[str, list[Optional[float]]] = {"step": [e["step"] for e in log], "level": [e["level"] for e in log]}
    kinds = sorted({k for e in log for k in e.get("read_smallest", {})})
    gated = sorted({k for e in log for k in e if k.startswith("read_") and k.endswith("_at_level")})
    at_level = [(k, f"{k[len('read_'):-len('_at_level')]} box, current level") for k in gated]
    for kind in kinds:
        for key, label in [("read_smallest", "smallest box"), ("read_1.6x", "1.6x box"), *at_level]:
            curves[f"reading {kind}, {label}"] = [e.get(key, {}).get(kind) for e in log]
    parts = [("grounding", "grounding")] + ([("grounding_rows_canvas", "grounding, stage's canvases,")] if any("grounding_rows_canvas" in e for e in log) else [])
    for part, label in (*parts, ("task_turn1", "task turn 1")):
        for key in ("valid_box_rate", "mean_iou", "tight_hit_rate"):
            curves[f"{label} {key.replace('_', ' ')}"] = [e.get(part, {}).get(key) for e in log]
    return curves


def plot_base_log(log: Sequence[dict[str, Any]], path: Path) -> Path:
    """Reading, grounding and the task's own turn 1 over the stage's steps, with the curriculum's level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = base_curves(log)
    steps = curves["step"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    groups = (("reading", "reading (greedy, turn 1 forced)"), ("grounding", "grounding questions"), ("task turn 1", "the task's own turn 1"))
    for ax, (prefix, title) in zip(axes, groups):
        for name, values in curves.items():
            if name.startswith(prefix):
                ax.plot(steps, [float("nan") if v is None else v for v in values], marker=".", label=name[len(prefix):].strip(" ,"))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    for entry in log:
        if entry.get("level_moved"):
            axes[0].axvline(entry["step"], color="gray", lw=0.6, ls=":")
    fig.suptitle("Free-form base abilities on held-out questions (dotted: the reading level moved on)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mean_reading(scores: dict[str, float]) -> float:
    return float(np.mean(list(scores.values()))) if scores else 0.0


def resume_conflict(output: Path, init: Path, settings: FreeformBaseSettings, last_step: int) -> Optional[str]:
    """Why the stage in ``output`` cannot be resumed with ``init`` and ``settings`` (None if it can).

    A resume must start from the same weights with the same settings; only ``threads`` may differ, and
    ``steps`` may grow (a longer stage) but not fall below the last check.
    """
    path = output / "settings.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    if "init" in stored and Path(stored["init"]).resolve() != Path(init).resolve():
        return f"it started from {stored['init']}, not {init}"
    defaults = asdict(FreeformBaseSettings())
    for key, value in asdict(settings).items():
        if key not in ("threads", "steps") and stored.get(key, defaults[key]) != value:
            return f"its {key} was {stored.get(key, defaults[key])!r}, not {value!r}"
    if last_step > settings.steps:
        return f"it has run {last_step} steps, more than the {settings.steps} asked"
    return None


def train_freeform_base(output: Path, init: Path, settings: FreeformBaseSettings, progress: bool = True) -> list[dict[str, Any]]:
    """Run the stage into ``output`` from the weights at ``init``, or resume from ``output``'s last check (same
    ``init`` and settings, see :func:`resume_conflict`; the first check after a resume records ``resumed_from``)."""
    torch.set_num_threads(settings.threads)
    output.mkdir(parents=True, exist_ok=True)
    log_path = output / "log.jsonl"
    log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    start, level = 0, settings.start_level
    resumed_from: Optional[int] = None
    if log:
        conflict = resume_conflict(output, init, settings, log[-1]["step"])
        if conflict:
            raise ValueError(f"{output} holds another stage ({conflict}); remove it or choose another folder")
        start, level = log[-1]["step"], log[-1]["level_next"]
        init = output / f"step-{start}"
        if start < settings.steps:
            resumed_from = start
            print(f"[freeform-base] resuming from {init} (level {level})", flush=True)
    else:
        (output / "settings.json").write_text(json.dumps({**asdict(settings), "init": str(init)}, indent=2) + "\n")
    model, processor = load_model(init), load_task_processor(init)
    rows = FreeformRows(processor, settings.pool, settings.reading_most, settings.grounding_margin, seed=settings.seed + start,
                        grounding_clutter=settings.grounding_clutter, grounding_sizes=settings.grounding_sizes)
    levels = GatedLevels(count=len(READING_LEVELS), gate=settings.level_gate, level=level)
    rows.set_level(levels.level)
    rng = random.Random(settings.seed * 1000 + start)

    def batch(step: int) -> list[Trajectory]:
        pick = lambda k: rng.sample(range(settings.pool), k)  # noqa: E731
        return ([rows.reading(i) for i in pick(settings.reading_rows)] + [rows.grounding(i) for i in pick(settings.grounding_rows)]
                + [rows.guessing(i) for i in pick(settings.guessing_rows)])

    own_canvas = None if settings.grounding_clutter is None and settings.grounding_sizes is None else (
        settings.grounding_clutter, settings.grounding_sizes)

    def record(step: int, losses: list[float]) -> None:
        measured = check(model, processor, levels.level, settings.check_questions, settings.gate_ratio, own_canvas)
        reading_here = measured["read_smallest"] if levels.last else measured[at_level_key(settings.gate_ratio)]
        nonlocal resumed_from
        entry = {"step": step, "level": levels.level, "loss": round(float(np.mean(losses)), 4) if losses else None, **measured}
        if resumed_from is not None:  # optimiser state starts afresh at a resume: say so in the log
            entry["resumed_from"], resumed_from = resumed_from, None
        entry["level_moved"] = levels.record(mean_reading(reading_here))
        entry["level_next"] = levels.level
        if entry["level_moved"]:
            rows.set_level(levels.level)
        _save(model, processor, output / f"step-{step}")
        log.append(entry)
        log_path.write_text("".join(json.dumps(e) + "\n" for e in log))
        plot_base_log(log, output / "curves.png")
        print(f"[freeform-base] {json.dumps(entry)}", flush=True)
        model.train()

    if not log:
        record(0, [])
    recent: list[float] = []

    def on_step(offset: int, loss: float) -> bool:
        recent.append(loss)
        step = start + offset + 1
        if step % settings.check_every == 0 or step == settings.steps:
            record(step, recent[-settings.check_every:])
            recent.clear()
        return step >= settings.steps

    remaining = settings.steps - start
    if remaining > 0:
        fit(model, rows.tokens, lambda s: batch(start + s), steps=remaining, learning_rate=settings.learning_rate,
            pad_id=processor.tokenizer.pad_token_id, schedule="constant", on_step=on_step, progress=progress, description="freeform base")
    return log

