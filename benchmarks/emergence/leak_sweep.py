"""How much of the hidden attribute survives in a crop of each size: the leak sweep.

A task hides its answer well only if a reader that is *told where the target is*
still cannot read it from a loose crop or from the view, while a tight crop
shows it plainly. This module measures that curve:

* the x-axis is the crop's side over the target's side (1.1 = tight, 8 = loose),
  with the target at a random offset inside the crop, plus the whole image shown
  at the view budgets a method uses (the view alone at 64 visual tokens, and at
  the 128 tokens of an MGPO episode, which the equal-token baseline spends on it);
* the reader is a pixel-statistics classifier (scikit-learn's logistic
  regression) trained afresh at each crop size on colour statistics of the
  target's area in the crop as the environment shows it (:func:`target_features`).

Every image passes through the environment's own crop and resize
(:func:`mgpo_env.cropping.crop_original`), so the sweep sees what a model sees.

    python benchmarks/emergence.py leak-sweep --output outputs/emergence
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageFilter

from mgpo_datasets.image_files import decode_image
from mgpo_datasets.synthetic import SyntheticTask
from mgpo_env.cropping import crop_original
from mgpo_env.image_budget import ImageBudget
from mgpo_env.scripted_turn import box_reply

from .freeform_task import EQUAL_TOKEN_VIEW_TOKENS, IMAGE_TOKENS, image_budget

RATIOS = (1.1, 1.25, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)


@dataclass
class SweepSettings:
    """What the sweep renders and how the reader is trained."""

    ratios: Sequence[float] = RATIOS
    train_samples: int = 600
    test_samples: int = 300
    seed: int = 11  # dataset seed of the sweep's images: used by no other stage
    crop_budget: ImageBudget = field(default_factory=image_budget)
    view_budgets: dict[str, ImageBudget] = field(
        default_factory=lambda: {
            f"view, {IMAGE_TOKENS} tokens": image_budget(IMAGE_TOKENS),
            f"view, {EQUAL_TOKEN_VIEW_TOKENS} tokens": image_budget(EQUAL_TOKEN_VIEW_TOKENS),
        }
    )


def crop_around(target: Sequence[float], ratio: float, offset: tuple[float, float], canvas: tuple[int, int]) -> tuple[int, int, int, int]:
    """A square box of side ``ratio`` x the target's side that holds the target, at ``offset``.

    ``offset`` in [0, 1]^2 places the target from the box's left/top edge (0) to its right/bottom
    edge (1). A box that would leave the canvas is shifted back inside (and cut to the canvas).
    """
    x1, y1, x2, y2 = (float(v) for v in target)
    side = max(x2 - x1, y2 - y1) * ratio
    width, height = canvas
    side = min(side, width, height)
    left = x1 - offset[0] * (side - (x2 - x1))
    top = y1 - offset[1] * (side - (y2 - y1))
    left = min(max(0.0, left), width - side)
    top = min(max(0.0, top), height - side)
    return int(math.floor(left)), int(math.floor(top)), int(math.ceil(left + side)), int(math.ceil(top + side))


def target_region(crop_box: Sequence[int], target: Sequence[float], shown: tuple[int, int], inset: float) -> tuple[int, int, int, int]:
    """The inside of the target's frame (``inset`` original pixels in from it) in the shown crop's pixels."""
    cx1, cy1, cx2, cy2 = crop_box
    sx, sy = shown[0] / (cx2 - cx1), shown[1] / (cy2 - cy1)
    x1, y1, x2, y2 = target
    left, top = (x1 + inset - cx1) * sx, (y1 + inset - cy1) * sy
    right, bottom = (x2 - inset - cx1) * sx, (y2 - inset - cy1) * sy
    left, top = int(math.ceil(left)), int(math.ceil(top))
    right, bottom = max(left + 2, int(math.floor(right))), max(top + 2, int(math.floor(bottom)))
    return left, top, right, bottom


def _statistics(pixels: np.ndarray, high_pass: np.ndarray) -> list[float]:
    """Means, colour covariance, and colour covariance of the high-pass residue of one area."""
    flat = pixels.reshape(-1, 3)
    residue = high_pass.reshape(-1, 3)
    raw_cov = np.cov(flat, rowvar=False) if len(flat) > 1 else np.zeros((3, 3))
    res_cov = np.cov(residue, rowvar=False) if len(residue) > 1 else np.zeros((3, 3))
    upper = np.triu_indices(3)
    return [*flat.mean(axis=0), *raw_cov[upper], *res_cov[upper]]


def target_features(shown: Image.Image, region: tuple[int, int, int, int]) -> np.ndarray:
    """Colour statistics of the target's inside and of its four halves (75 numbers).

    For each of the whole inside, its top, bottom, left and right halves: the mean colour,
    the 3x3 colour covariance (6 numbers), and the colour covariance of the residue after
    a 3x3 box blur (6 numbers): what a fine checker leaves, and along which colour axis.
    """
    array = np.asarray(shown, dtype=np.float32)
    blurred = np.asarray(shown.filter(ImageFilter.BoxBlur(1)), dtype=np.float32)
    high = array - blurred
    x1, y1, x2, y2 = region
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(array.shape[1], x2), min(array.shape[0], y2)
    mx, my = (x1 + x2) // 2, (y1 + y2) // 2
    areas = [(x1, y1, x2, y2), (x1, y1, x2, my), (x1, my, x2, y2), (x1, y1, mx, y2), (mx, y1, x2, y2)]
    features: list[float] = []
    for ax1, ay1, ax2, ay2 in areas:
        ax2, ay2 = max(ax2, ax1 + 1), max(ay2, ay1 + 1)
        features += _statistics(array[ay1:ay2, ax1:ax2], high[ay1:ay2, ax1:ax2])
    return np.asarray(features, dtype=np.float64)


def crop_ratios(accuracy: dict[str, float]) -> dict[float, float]:
    """The crop columns of a result's ``accuracy`` (keyed by ratio, e.g. ``"1.25"``), by ratio."""
    return {float(name): value for name, value in accuracy.items() if not name.startswith("view")}


def views(accuracy: dict[str, float]) -> dict[str, float]:
    """The whole-image columns of a result's ``accuracy`` (named after their view budget)."""
    return {name: value for name, value in accuracy.items() if name.startswith("view")}


def sweep_question_type(task_kwargs: dict[str, Any], question_type: str, settings: SweepSettings, progress: bool = True) -> dict[str, Any]:
    """Reader accuracy at each crop ratio and view budget for one question type.

    The classifier predicts the *attribute* (the colour pair, or the half), not the option
    letter, so option shuffling cannot hide a leak from it; chance is the largest share of
    one attribute value among the test images.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    kwargs = {k: v for k, v in task_kwargs.items() if k not in ("question_types", "num_samples", "seed")}
    total = settings.train_samples + settings.test_samples
    task = SyntheticTask(total, seed=settings.seed, question_types=[question_type], **kwargs)
    rng = np.random.default_rng([settings.seed, len(question_type)])
    inset = task.frame_width + 1  # the inside of the frame, whatever its width
    columns: dict[str, list[np.ndarray]] = {f"{r:g}": [] for r in settings.ratios}
    columns.update({name: [] for name in settings.view_budgets})
    labels: list[str] = []
    iterator: Any = range(total)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"leak sweep: {question_type}", unit="image")
    for index in iterator:
        sample = task[index]
        image = decode_image(sample.image)
        target = sample.target_boxes[0]
        labels.append(str(sample.metadata["attribute"]))
        for ratio in settings.ratios:
            offset = (float(rng.uniform()), float(rng.uniform()))
            box = crop_around(target, ratio, offset, image.size)
            shown = crop_original(image, box, settings.crop_budget)
            columns[f"{ratio:g}"].append(target_features(shown, target_region(box, target, shown.size, inset)))
        whole = (0, 0, image.width, image.height)
        for name, budget in settings.view_budgets.items():
            shown = crop_original(image, whole, budget)
            columns[name].append(target_features(shown, target_region(whole, target, shown.size, inset)))
    y = np.asarray(labels)
    classes = sorted(set(labels))
    chance = max(float(np.mean(y[settings.train_samples:] == c)) for c in classes)
    result: dict[str, Any] = {"question_type": question_type, "chance": chance, "classes": classes, "test_samples": settings.test_samples, "accuracy": {}}
    n = settings.train_samples
    for name, rows in columns.items():
        x = np.stack(rows)
        reader = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
        reader.fit(x[:n], y[:n])
        result["accuracy"][name] = float(np.mean(reader.predict(x[n:]) == y[n:]))
    return result


def at_chance_bound(chance: float, samples: int) -> float:
    """The accuracy a reader at chance stays under 97.5% of the time (normal approximation)."""
    return chance + 1.96 * math.sqrt(chance * (1 - chance) / samples)


def sweep(task_kwargs: dict[str, Any], settings: Optional[SweepSettings] = None, progress: bool = True) -> dict[str, Any]:
    """:func:`sweep_question_type` for each of the task's question types, with the verdicts."""
    settings = settings or SweepSettings()
    results = [sweep_question_type(task_kwargs, kind, settings, progress) for kind in task_kwargs["question_types"]]
    for result in results:
        bound = at_chance_bound(result["chance"], result["test_samples"])
        crops = crop_ratios(result["accuracy"])
        readable = [ratio for ratio, value in crops.items() if value >= 0.9]
        result["chance_bound"] = bound
        result["loose_at_chance"] = all(value <= bound for ratio, value in crops.items() if ratio >= 4)
        result["views_at_chance"] = all(value <= bound for value in views(result["accuracy"]).values())
        result["largest_ratio_read_at_0.9"] = max(readable) if readable else None
    return {"settings": {"ratios": list(settings.ratios), "train_samples": settings.train_samples, "test_samples": settings.test_samples,
                         "seed": settings.seed}, "task": task_kwargs, "results": results}


def plot_sweep(data: dict[str, Any], path: Any, vlm: Optional[dict[str, Any]] = None) -> Any:
    """Reader accuracy against crop side / target side, one line per question type and reader."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for result in data["results"]:
        crops, whole = crop_ratios(result["accuracy"]), views(result["accuracy"])
        (line,) = ax.plot(list(crops), list(crops.values()), marker="o", label=f"pixel classifier: {result['question_type']}")
        ax.scatter([12 + 4 * i for i in range(len(whole))], list(whole.values()), marker="s", color=line.get_color())
        ax.axhline(result["chance_bound"], color="gray", lw=0.6, ls=":")
    view_names = list(views(data["results"][0]["accuracy"]))
    for i, name in enumerate(view_names):
        ax.annotate(name.replace("view, ", "view\n"), (12 + 4 * i, 0.05), ha="center", fontsize=7)
    for name, curve in (vlm or data.get("vlm") or {}).items():
        crops = dict(sorted(crop_ratios(curve).items()))
        (line,) = ax.plot(list(crops), list(crops.values()), marker="^", ls="--", label=f"tiny VLM: {name}")
        shown = [(12 + 4 * view_names.index(v), value) for v, value in views(curve).items() if v in view_names]
        if shown:
            ax.scatter(*zip(*shown), marker="^", color=line.get_color())
    ax.axhline(0.9, color="green", lw=0.6, ls="--")
    ax.axvline(4, color="red", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("crop side / target side (squares: the whole image at a view budget)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("What a crop reveals of the hidden attribute (dotted: chance bound)")
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown_table(data: dict[str, Any]) -> str:
    """The sweep as a table: one row per question type, one column per crop ratio and view."""
    names = list(data["results"][0]["accuracy"])
    header = "| question | chance (bound) | " + " | ".join(f"{n}x" if not n.startswith("view") else n for n in names) + " | >= 4x and views at chance | read at >= 0.9 up to |"
    lines = [header, "|" + "---|" * (len(names) + 4)]
    for result in data["results"]:
        cells = " | ".join(f"{result['accuracy'][n]:.2f}" for n in names)
        largest = result["largest_ratio_read_at_0.9"]
        lines.append(
            f"| {result['question_type']} | {result['chance']:.2f} ({result['chance_bound']:.2f}) | {cells} | "
            f"{'yes' if result['loose_at_chance'] and result['views_at_chance'] else 'no'} | {f'{largest:g}x' if largest else '-'} |"
        )
    for kind, curve in (data.get("vlm") or {}).items():
        cells = " | ".join(f"{curve[n]:.2f}" if n in curve else "-" for n in names)
        lines.append(f"| tiny VLM: {kind} | - | {cells} | | |")
    return "\n".join(lines)


def run_leak_sweep(task_kwargs: dict[str, Any], output: Any, settings: Optional[SweepSettings] = None, progress: bool = True,
                   vlm: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Sweep, then write ``leak_sweep.json``, ``leak_sweep.png`` and ``leak_sweep.md`` into ``output``.

    ``vlm``: the trained VLM's curves (:func:`vlm_sweep`) with ``checkpoint`` and ``questions``, kept beside the classifier's.
    """
    import json
    from pathlib import Path

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    data = sweep(task_kwargs, settings, progress)
    if vlm:
        data["vlm"] = vlm["curves"]
        data["vlm_reader"] = {k: v for k, v in vlm.items() if k != "curves"}
    (output / "leak_sweep.json").write_text(json.dumps(data, indent=2, default=list))
    plot_sweep(data, output / "leak_sweep.png")
    (output / "leak_sweep.md").write_text(markdown_table(data) + "\n")
    return data


def crop_reply(target: Sequence[float], ratio: float, offset: tuple[float, float], canvas: tuple[int, int], view: tuple[int, int], min_side: float = 28.0) -> str:
    """A turn-1 reply (view pixels) whose crop holds the target at about ``ratio`` x its side.

    The crop is never smaller than the environment's smallest valid box (``min_side`` view
    pixels): where ``ratio`` would be smaller, the crop takes that smallest size instead.
    """
    sx, sy = view[0] / canvas[0], view[1] / canvas[1]
    side = max(target[2] - target[0], target[3] - target[1])
    ratio = max(ratio, (math.floor(min_side) + 1.5) / (sx * side))
    x1, y1, x2, y2 = crop_around(target, ratio, offset, canvas)
    box = (int(x1 * sx), int(y1 * sy), min(view[0], math.ceil(x2 * sx)), min(view[1], math.ceil(y2 * sy)))
    return box_reply(box, "pixel", view)


def vlm_sweep(model: Any, processor: Any, task_kwargs: dict[str, Any], evaluate: Any, ratios: Sequence[float] = RATIOS,
              questions: int = 200, seed: int = 12, view_evaluate: Any = None) -> dict[str, dict[str, float]]:
    """The trained tiny VLM as the reader: greedy accuracy per question type when turn 1 is forced
    to a crop of each ratio (random offsets), on held-out questions of dataset seed ``seed``.

    ``evaluate(model, processor, task, indices, forced_first)`` plays the episodes (the experiment's
    greedy evaluation) and returns its summary with ``accuracy_per_category``. With
    ``view_evaluate(model, processor, task, indices, budget)`` (single-turn episodes at ``budget``),
    each of :class:`SweepSettings`' view budgets adds a column named like the classifier's.
    """
    task = SyntheticTask(questions, seed=seed, **{k: v for k, v in task_kwargs.items() if k not in ("num_samples", "seed")})
    canvas = task.canvas_size
    view = SweepSettings().crop_budget.view_size(canvas)  # the environment shows the view and crops at one budget
    rng = np.random.default_rng(seed)
    curves: dict[str, dict[str, float]] = {kind: {} for kind in task.question_types}
    for ratio in ratios:
        replies = {i: crop_reply(task[i].target_boxes[0], ratio, (float(rng.uniform()), float(rng.uniform())), canvas, view) for i in range(questions)}
        summary = evaluate(model, processor, task, range(questions), lambda i: replies[i])
        for kind, accuracy in summary["accuracy_per_category"].items():
            curves[kind][f"{ratio:g}"] = float(accuracy)
    for name, budget in (SweepSettings().view_budgets.items() if view_evaluate else ()):
        summary = view_evaluate(model, processor, task, range(questions), budget)
        for kind, accuracy in summary["accuracy_per_category"].items():
            curves[kind][name] = float(accuracy)
    return curves
