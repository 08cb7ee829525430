"""Episodes per second of ``mgpo/HighResVQA-v0`` on real-size JPEGs, against the reference and the floor.

A GRPO group plays one sample G = 8 times (two-turn protocol: reset, a grounding
reply with a box, an answer). Three ways do the same image work for the same
boxes, in one run:

* **ours**: ``gym.make("mgpo/HighResVQA-v0", dataset=[Sample(image=path), ...])``;
  a group is 8 ``reset(options={"index": i})`` + 2 ``step`` each, with everything the
  environment does (prompts, observation canvas, info, grading).
* **naive**: what the published reference does, written here: at every reset it
  opens and fully decodes the original and resizes it with NEAREST; at every crop
  it opens and fully decodes the original again, crops, resizes with NEAREST; no cache.
  (It is written generously: no extra ``convert("RGB")`` copy, no observation.)
* **floor**: one full decode per group, the view resized once, each crop resized,
  with the very resize functions ours uses, and nothing else.

Each group uses a fresh sample id, so ours decodes once per group (as in training,
where every group is a new question) and never profits from an earlier group.
The ways are interleaved group by group, and each is timed by the wall clock and
by this process's CPU time (steadier on a shared machine). Boxes come in two
kinds: ``uniform`` (``RandomPolicy``) and ``log-uniform`` (smaller, as around objects).
The images are generated here (smooth colour fields, shapes, sensor-like noise,
saved as JPEG quality 90) at 4000x3000 and at 7680x4320 (HR-Bench 8K), into a
temporary folder that is removed at the end. The run also profiles ours
(cProfile, CPU clock) and measures the fast paths' pixel differences from the
exact path and from the true area average.

Run (the results file records the command and the numbers)::

    .venv/bin/python benchmarks/env_throughput.py            # ~3-4 min on 2 CPU cores
    .venv/bin/python benchmarks/env_throughput.py --quick    # ~1 min: one image and one round per size
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import mgpo_env  # noqa: E402,F401  (registers the environment)
from mgpo_env import Sample  # noqa: E402
from mgpo_env.box_parser import format_box, parse_box  # noqa: E402
from mgpo_env.geometry import IntBox, Size, to_pixel_box, to_view_pixels, validate_box, view_to_original  # noqa: E402
from mgpo_env.grading import grade  # noqa: E402
from mgpo_env.image_budget import ImageBudget, resize_region  # noqa: E402
from mgpo_datasets.image_files import decode_image  # noqa: E402
from mgpo_env.image_store import ImageStore  # noqa: E402
from mgpo_tools.scripted_policies import RandomPolicy  # noqa: E402

GROUP = 8
SIZES: tuple[Size, ...] = ((4000, 3000), (7680, 4320))
ANSWER = "I compare the options with what I see. \\boxed{A}"
QUESTION = "What is written on the small sign?"
CHOICES = ("STOP", "EXIT", "OPEN", "SALE")
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "env_throughput.md"
METHOD = """\
eps/s = episodes per second, the median over rounds. A group is 8 episodes on one image
(the GRPO group), each a reset, a grounding reply with a seeded random box and an answer;
every group uses a fresh sample id, so ours decodes once per group as in training. The same
boxes serve all three ways:

- **ours**: `gym.make("mgpo/HighResVQA-v0", dataset=[Sample(image=path, ...)])`, 8 x
  (`reset(options={"index": i})` + 2 `step`), everything included (prompts, the 1344x1344
  observation canvas, info, grading).
- **naive**: the published reference's image handling: open + full decode at every reset and
  at every crop, NEAREST resizes, no cache (generously: no extra `convert("RGB")` copy, no
  observation).
- **floor**: one full decode per group, the view once, each crop, with the very resize calls
  ours makes (`resize_region`), and nothing else.

Boxes: `uniform` is `RandomPolicy` (each side uniform from 56 view pixels to the whole view,
so a crop is a quarter of the image on average and is shrunk to the budget);
`log-uniform` draws the sides log-uniformly over the same range (smaller boxes, as around
objects). The image work ours does per group: one decode, the view once (cached per sample
and budget), a crop resize per episode; the JPEG fast path (whole-factor `Image.reduce`
straight from the region, then antialiased bilinear) for every shrink of 2x or more.
"""


# ---------------------------------------------------------------- the images
def make_photo_like(size: Size, seed: int) -> Image.Image:
    """Smooth colour fields + hard-edged shapes + per-pixel noise: compresses and decodes like a photo."""
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = (rng.random((height // 48 + 2, width // 48 + 2, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    scale = width / 4000
    for _ in range(400):
        x, y = int(rng.integers(width)), int(rng.integers(height))
        side = int(rng.integers(8, 400) * scale)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x, y, x + side, y + side), fill=colour)
        elif kind == 1:
            draw.rectangle((x, y, x + side, y + side // 2), fill=colour)
        else:
            draw.line((x, y, x + side, y + side // 3), fill=colour, width=max(1, side // 40))
    pixels = np.asarray(image).astype(np.int16)
    pixels += rng.integers(-10, 11, pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(folder: Path, size: Size, count: int, seed: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"photo_{size[0]}x{size[1]}_{i}.jpg"
        make_photo_like(size, seed + i).save(path, quality=90)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ the work
@dataclass
class Group:
    """One group: an image, the 8 grounding replies and the crop boxes they mean."""

    path: Path
    original_size: Size
    view_size: Size
    replies: list[str]
    crop_boxes: list[IntBox]


BOX_SIZES = ("uniform", "log-uniform")


class LogUniformBoxPolicy(RandomPolicy):
    """RandomPolicy with box sides log-uniform between ``min_side`` and the view: small boxes as often as large ones."""

    def __call__(self, observation, info) -> str:
        w, h = info["model_image_size"]
        bw = int(round(np.exp(self.rng.uniform(np.log(self.min_side), np.log(w)))))
        bh = int(round(np.exp(self.rng.uniform(np.log(self.min_side), np.log(h)))))
        x = int(self.rng.integers(0, w - bw + 1))
        y = int(self.rng.integers(0, h - bh + 1))
        return "The detail is probably here.\n" + format_box((x, y, x + bw, y + bh), "guess")


def make_groups(paths: list[Path], size: Size, budget: ImageBudget, seed: int, boxes: str = "uniform") -> list[Group]:
    """Seeded random boxes of varied size, mapped to original pixels once.

    ``uniform``: :class:`~mgpo_tools.scripted_policies.RandomPolicy` (each side uniform between
    56 view pixels and the whole view: a crop is a quarter of the image on average).
    ``log-uniform``: sides log-uniform over the same range (median crop ~1/15 of each side's
    range above 56 px), closer to boxes around objects.
    """
    policy = (RandomPolicy if boxes == "uniform" else LogUniformBoxPolicy)(seed=seed)
    view_size = budget.view_size(size)
    groups = []
    for path in paths:
        replies, crops = [], []
        for _ in range(GROUP):
            reply = policy({"turn": 0}, {"protocol": "two_turn", "model_image_size": view_size})
            parsed = parse_box(reply)
            assert parsed is not None
            accepted, error = validate_box(to_view_pixels(parsed.coords, "pixel", view_size), view_size)
            assert accepted is not None, error
            crops.append(to_pixel_box(view_to_original(accepted, view_size, size), size))
            replies.append(reply)
        groups.append(Group(path, size, view_size, replies, crops))
    return groups


class OursRunner:
    """The environment through ``gym.make``; every group gets a fresh sample id (a cold cache)."""

    def __init__(self, groups: list[Group], rounds: int) -> None:
        samples = [
            Sample(sample_id=f"r{r}-g{g}", image=str(group.path), question=QUESTION, answer="A", choices=CHOICES)
            for r in range(rounds)
            for g, group in enumerate(groups)
        ]
        self.env = gym.make("mgpo/HighResVQA-v0", dataset=samples)
        self.groups = groups
        self.peak_cached_bytes = 0
        self.peak_entries = 0
        self.latency: dict[str, list[float]] = {"reset (first of group)": [], "reset (rest of group)": [], "step (crop)": [], "step (answer)": []}
        self.checked = 0

    def run_group(self, round_index: int, g: int, *, record: bool = False) -> None:
        env, group = self.env, self.groups[g]
        index = round_index * len(self.groups) + g
        clock = time.perf_counter
        for k in range(GROUP):
            t0 = clock()
            env.reset(options={"index": index})
            t1 = clock()
            _, _, _, _, info = env.step(group.replies[k])
            t2 = clock()
            env.step(ANSWER)
            t3 = clock()
            if record:
                self.latency["reset (first of group)" if k == 0 else "reset (rest of group)"].append(t1 - t0)
                self.latency["step (crop)"].append(t2 - t1)
                self.latency["step (answer)"].append(t3 - t2)
            if info["crop_box"] != group.crop_boxes[k]:  # same work as the other two ways
                raise AssertionError(f"ours cropped {info['crop_box']}, expected {group.crop_boxes[k]}")
            self.checked += 1
        store = env.unwrapped.images
        self.peak_cached_bytes = max(self.peak_cached_bytes, store.cached_bytes)
        self.peak_entries = max(self.peak_entries, len(store))


class NaiveRunner:
    """The published reference's image handling: decode at every reset and every crop, NEAREST, no cache."""

    def __init__(self, groups: list[Group], budget: ImageBudget) -> None:
        self.groups, self.budget = groups, budget

    @staticmethod
    def _decode(path: Path) -> Image.Image:
        image = Image.open(path)
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")

    def run_group(self, round_index: int, g: int, *, record: bool = False) -> None:
        group, budget = self.groups[g], self.budget
        for k in range(GROUP):
            # reset: open + decode, shrink with NEAREST
            image = self._decode(group.path)
            view = image.resize(budget.view_size(image.size), Image.Resampling.NEAREST)
            # step 1: parse the box, open + decode again, crop, resize with NEAREST
            parsed = parse_box(group.replies[k])
            accepted, _ = validate_box(to_view_pixels(parsed.coords, "pixel", view.size), view.size)
            box = to_pixel_box(view_to_original(accepted, view.size, image.size), image.size)
            image = self._decode(group.path)
            crop = image.crop(box)
            crop.resize(budget.view_size(crop.size), Image.Resampling.NEAREST)
            # step 2: grade
            grade(ANSWER, "A", CHOICES)


class FloorRunner:
    """One decode per group, the view once, each crop: the least image work ours must do."""

    def __init__(self, groups: list[Group], budget: ImageBudget) -> None:
        self.groups, self.budget = groups, budget

    def run_group(self, round_index: int, g: int, *, record: bool = False) -> None:
        group, budget = self.groups[g], self.budget
        original = decode_image(str(group.path))
        resize_region(original, (0, 0) + group.original_size, group.view_size)
        for box in group.crop_boxes:
            resize_region(original, box, budget.view_size((box[2] - box[0], box[3] - box[1])))


# ------------------------------------------------------------------ quality
def true_area_average(pixels: np.ndarray, size: Size) -> np.ndarray:
    """The exact area average of ``pixels`` (HxWx3) at ``size``, in float: the reference for every filter."""

    def along(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
        n_in = a.shape[axis]
        cum = np.concatenate([np.zeros_like(np.take(a, [0], axis=axis)), np.cumsum(a, axis=axis)], axis=axis)
        edges = np.arange(n_out + 1) * (n_in / n_out)
        whole = np.minimum(np.floor(edges).astype(int), n_in - 1)
        frac = (edges - whole).reshape([-1 if d == axis else 1 for d in range(a.ndim)])
        integral = np.take(cum, whole, axis=axis) + frac * np.take(a, whole, axis=axis)  # F(edge)
        return np.diff(integral, axis=axis) / (n_in / n_out)

    a = pixels.astype(np.float32)
    return along(along(a, size[0], 1), size[1], 0)


def differences(image: Image.Image, reference: np.ndarray) -> tuple[float, float, float]:
    """(mean |diff|, max |diff|, PSNR in dB) of ``image`` against ``reference`` (0-255 levels)."""
    diff = np.abs(np.asarray(image).astype(np.float64) - reference)
    mse = float((diff**2).mean())
    return float(diff.mean()), float(diff.max()), (10 * np.log10(255**2 / mse) if mse > 0 else float("inf"))


def _cpu_ms(work: Callable[[], object], repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return 1000 * best


def quality(group: Group, budget: ImageBudget) -> list[str]:
    """How far the fast paths are from the exact path and from the true area average, and how much faster."""
    original = decode_image(str(group.path))
    pixels = np.asarray(original)
    jobs = [("view", (0, 0) + group.original_size, group.view_size)]
    for k, box in enumerate(group.crop_boxes):
        jobs.append((f"crop {k}", box, budget.view_size((box[2] - box[0], box[3] - box[1]))))
    rows, fast_jobs = [], 0
    totals = {"exact": 0.0, "fast": 0.0}
    worst = {"psnr": float("inf"), "max": 0.0, "mean": 0.0}
    truth_psnr: dict[str, list[float]] = {"exact": [], "fast": []}
    for name, box, size in jobs:
        exact = resize_region(original, box, size, fast=False)
        fast = resize_region(original, box, size, fast=True)
        if np.array_equal(np.asarray(exact), np.asarray(fast)):
            continue  # under 2x or enlarged: the fast path is the exact path
        fast_jobs += 1
        totals["exact"] += _cpu_ms(lambda: resize_region(original, box, size, fast=False))
        totals["fast"] += _cpu_ms(lambda: resize_region(original, box, size, fast=True))
        mean, peak, psnr = differences(fast, np.asarray(exact).astype(np.float64))
        worst = {"psnr": min(worst["psnr"], psnr), "max": max(worst["max"], peak), "mean": max(worst["mean"], mean)}
        truth = true_area_average(pixels[box[1] : box[3], box[0] : box[2]], size)
        truth_psnr["exact"].append(differences(exact, truth)[2])
        truth_psnr["fast"].append(differences(fast, truth)[2])
    w, h = group.original_size
    if fast_jobs:
        rows.append(
            f"- {w}x{h}, fast shrink (`resize_region`, JPEG): {fast_jobs} of {len(jobs)} resizes (view + 8 crops) take it; "
            f"{totals['exact']:.0f} -> {totals['fast']:.0f} ms CPU ({totals['exact'] / totals['fast']:.1f}x faster). "
            f"Against the exact path: worst PSNR {worst['psnr']:.1f} dB, worst mean |diff| {worst['mean']:.2f}, max |diff| {worst['max']:.0f} levels. "
            f"Against the true area average: exact path PSNR {min(truth_psnr['exact']):.1f}-{max(truth_psnr['exact']):.1f} dB, "
            f"fast path {min(truth_psnr['fast']):.1f}-{max(truth_psnr['fast']):.1f} dB."
        )
    # The view from a reduced-size JPEG decode (only where no crop will follow).
    store = ImageStore()
    draft_view, _ = store.view("q", str(group.path), budget, need_original=False)
    if store.draft_decodes:
        exact_view = resize_region(original, (0, 0) + group.original_size, group.view_size, fast=False)
        mean, peak, psnr = differences(draft_view, np.asarray(exact_view).astype(np.float64))
        truth = true_area_average(pixels, group.view_size)
        draft_ms = _cpu_ms(lambda: ImageStore().view("q", str(group.path), budget, need_original=False))
        full_ms = _cpu_ms(lambda: ImageStore().view("q", str(group.path), budget, need_original=True))
        rows.append(
            f"- {w}x{h}, view from `draft()` (single-turn only): {full_ms:.0f} -> {draft_ms:.0f} ms CPU "
            f"(full decode + view vs reduced decode + view). Against the exact view: PSNR {psnr:.1f} dB, "
            f"mean |diff| {mean:.2f}, max |diff| {peak:.0f}; against the true area average: exact view "
            f"{differences(exact_view, truth)[2]:.1f} dB, draft view {differences(draft_view, truth)[2]:.1f} dB."
        )
    return rows


# ------------------------------------------------------------- measurement
@dataclass
class SizeResult:
    size: Size
    boxes: str
    images: int
    eps: dict[str, list[float]] = field(default_factory=dict)  # way -> episodes/s of each round (wall clock)
    cpu_eps: dict[str, list[float]] = field(default_factory=dict)  # the same per second of this process's CPU time
    peak_cached_bytes: int = 0
    peak_entries: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    profile: str = ""
    profile_summary: str = ""
    quality: list[str] = field(default_factory=list)

    def median(self, way: str, cpu: bool = False) -> float:
        return statistics.median((self.cpu_eps if cpu else self.eps)[way])


def measure(size: Size, paths: list[Path], rounds: int, seed: int, boxes: str, profile: bool, with_quality: bool) -> SizeResult:
    budget = ImageBudget()
    groups = make_groups(paths, size, budget, seed, boxes)
    ours = OursRunner(groups, rounds + 2)  # +1 warm-up round, +1 profile round
    runners: dict[str, Callable[..., None]] = {
        "ours": ours.run_group,
        "naive": NaiveRunner(groups, budget).run_group,
        "floor": FloorRunner(groups, budget).run_group,
    }
    result = SizeResult(size, boxes, len(paths), {way: [] for way in runners}, {way: [] for way in runners})
    for run in runners.values():  # warm-up: imports, allocator, page cache
        run(rounds, 0)
    ways = list(runners)
    for r in range(rounds):
        wall = dict.fromkeys(ways, 0.0)
        cpu = dict.fromkeys(ways, 0.0)
        for g in range(len(groups)):
            # Interleave the ways group by group (rotating who goes first), so a change in
            # the machine's load touches all three alike.
            shift = (r * len(groups) + g) % len(ways)
            for way in ways[shift:] + ways[:shift]:
                wall0, cpu0 = time.perf_counter(), time.process_time()
                runners[way](r, g, record=(way == "ours"))
                wall[way] += time.perf_counter() - wall0
                cpu[way] += time.process_time() - cpu0
        for way in ways:
            result.eps[way].append(GROUP * len(groups) / wall[way])
            result.cpu_eps[way].append(GROUP * len(groups) / cpu[way])
    result.peak_cached_bytes, result.peak_entries = ours.peak_cached_bytes, ours.peak_entries
    if with_quality:
        result.quality = quality(groups[0], budget)
    result.latency_ms = {name: 1000 * statistics.median(values) for name, values in ours.latency.items()}
    if profile:
        result.profile_summary, result.profile = profile_ours(ours, rounds + 1, len(groups))
    return result


def profile_ours(ours: OursRunner, round_index: int, groups: int) -> tuple[str, str]:
    """cProfile (CPU time) of one round of ours: a one-line split by kind of work, and the top of the table."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for g in range(groups):
        ours.run_group(round_index, g)
    profiler.disable()
    cumulative: dict[str, float] = {}
    for (filename, _, name), (_, _, _, cumtime, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        if "mgpo_env" in filename or filename.endswith("env_throughput.py"):
            cumulative[name] = max(cumulative.get(name, 0.0), cumtime)
    total = cumulative["run_group"]
    parts = {  # disjoint at this level: the decode, the resizes ours asks for, the observation canvas
        "JPEG decode (`decode_image`)": cumulative.get("decode_image", 0.0),
        "view + crop resizes (`resize_region`)": cumulative.get("resize_region", 0.0),
        "observation canvas (`_observation`, with its own rescale of crop views wider than 1344)": cumulative.get("_observation", 0.0),
    }
    parts["everything else (prompts, info, parsing, grading, cache)"] = total - sum(parts.values())
    summary = f"{1000 * total / groups:.0f} ms CPU a group: " + ", ".join(
        f"{name} {100 * value / total:.0f}%" for name, value in parts.items()
    )
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(10)
    return summary, stream.getvalue()


# ---------------------------------------------------------------- reporting
def table(results: list[SizeResult]) -> str:
    lines = [
        "| image | boxes | clock | groups x rounds | ours eps/s | naive eps/s | floor eps/s | ours / naive (target >= 5x) | floor / ours (target <= 1.5x) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for cpu in (False, True):
            ours, naive, floor = (res.median(way, cpu) for way in ("ours", "naive", "floor"))
            lines.append(
                f"| {res.size[0]}x{res.size[1]} JPEG | {res.boxes} | {'CPU time' if cpu else 'wall'} | {res.images} x {len(res.eps['ours'])} "
                f"| {ours:.1f} | {naive:.1f} | {floor:.1f} | **{ours / naive:.1f}x** | **{floor / ours:.2f}x** |"
            )
    return "\n".join(lines)


def details(results: list[SizeResult]) -> str:
    lines = ["Memory and latency of ours:", ""]
    for res in results:
        w, h = res.size
        lines.append(
            f"- {w}x{h}, {res.boxes} boxes: the image cache (`ImageStore.cached_bytes`: originals and views) held at most "
            f"{res.peak_cached_bytes / 2**20:.1f} MiB in {res.peak_entries} entries (bound 512 MiB; one original is "
            f"{w * h * 3 / 2**20:.1f} MiB decoded); median latency: "
            + ", ".join(f"{name} {ms:.1f} ms" for name, ms in res.latency_ms.items())
        )
    lines += ["", "Episodes per second of each round (wall clock):", ""]
    for res in results:
        lines.append(
            f"- {res.size[0]}x{res.size[1]}, {res.boxes}: "
            + "; ".join(f"{w} {', '.join(f'{v:.1f}' for v in vals)}" for w, vals in res.eps.items())
        )
    lines += ["", "Where ours spends its time (cProfile with a CPU-time clock, one extra round):", ""]
    for res in results:
        if res.profile_summary:
            lines.append(f"- {res.size[0]}x{res.size[1]}, {res.boxes} boxes: {res.profile_summary}")
    lines += ["", "Image quality and speed of the fast paths (first image of each size; PSNR in dB over 0-255 levels):", ""]
    for res in results:
        lines += res.quality
    return "\n".join(lines)


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import PIL

    return f"{platform.machine()}, {cores} CPU cores, Python {platform.python_version()}, Pillow {PIL.__version__}, numpy {np.__version__}"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per way (default 3, quick 1)")
    parser.add_argument("--images", type=int, default=None, help="images (groups) per size (default 3, quick 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file (markdown); '-' for none")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    count = args.images or (1 if args.quick else 3)
    try:
        python = str(Path(sys.executable).relative_to(ROOT))
    except ValueError:
        python = "python"
    command = shlex.join([python, "benchmarks/env_throughput.py", *(sys.argv[1:] if argv is None else argv)])

    results = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mgpo_bench_") as tmp:
        for s, size in enumerate(SIZES):
            started = time.perf_counter()
            paths = write_images(Path(tmp), size, count, seed=args.seed + 100 * s)
            print(f"{size[0]}x{size[1]}: wrote {count} JPEG(s) in {time.perf_counter() - started:.1f} s "
                  f"({sum(p.stat().st_size for p in paths) / count / 2**20:.1f} MiB each); measuring ...", flush=True)
            for b, boxes in enumerate(BOX_SIZES):
                first = b == 0
                results.append(measure(size, paths, rounds, args.seed + s, boxes, profile=first, with_quality=first))
                print(f"  {boxes} boxes: ours {results[-1].median('ours'):.1f}, naive {results[-1].median('naive'):.1f}, "
                      f"floor {results[-1].median('floor'):.1f} episodes/s", flush=True)

    report = table(results) + "\n\n" + details(results)
    print()
    print(report)
    for res in results:
        if res.profile:
            print(f"\ncProfile of ours, {res.size[0]}x{res.size[1]} (sorted by own time):\n{res.profile}")
    load = f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run"
    print(f"\n{machine()}; {load}")
    if str(args.output) != "-":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            "# Environment throughput: groups of 8 two-turn episodes on real-size JPEGs\n\n"
            f"Command: `{command}`\n\n"
            f"Machine: {machine()}; {load} (a shared machine: other jobs ran too, so the CPU-time rows, "
            "which count only this process's own CPU seconds, are the steadier comparison).\n\n"
            + METHOD
            + "\n"
            + report
            + "\n"
        )
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
