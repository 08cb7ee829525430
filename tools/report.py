"""``mgpo report RUN_DIR``: one self-contained HTML file with a run's curves and episodes.

Inputs, both optional:

* ``RUN_DIR/metrics.jsonl``: one JSON object per training step; every numeric key
  is plotted against ``step`` (or the line number) with matplotlib, as PNG
  embedded in the page. Unreadable lines are skipped with a warning
  (:func:`mgpo_tools.metrics.read_metrics`).
* ``RUN_DIR/episodes/``: an :class:`~mgpo_tools.episode_store.EpisodeStore` (a
  store folder itself may be given as ``RUN_DIR`` too).

The page (default ``RUN_DIR/report.html``) needs no network and no other file:
it opens from ``file://``. Per episode it shows the original with the predicted
and annotated boxes drawn by :func:`mgpo_env.rendering.draw_boxes` (the function
``env.render()`` uses), each crop the model was shown, the question with the gold
and the parsed answer, every grounding, and the transcript; the gallery filters by
correct / incorrect, valid / invalid box, category, split and text, and pages.

Why it stays usable with thousands of episodes: episodes travel as one JSON block
and every image as a small data URI (each picture is encoded as PNG and as JPEG and
the smaller is kept: PNG wins on flat synthetic images, JPEG on photos); identical
pictures are embedded once. The browser parses the JSON once and builds the DOM
(and decodes the images) only for the page being shown. ``benchmarks/report_size.py``
measures the file size and load time of a 1,000-episode report.

Model output is untrusted text: the page inserts it with ``textContent``, never as HTML.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import functools
import hashlib
import html
import io
import json
import math
import os
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from PIL import Image

from mgpo_env.rendering import INVALID_COLOR, PREDICTED_COLOR, TARGET_COLOR, draw_boxes

from .episode_record import EpisodeRecord, StoredImage
from .episode_store import EPISODES_FILE, EpisodeStore
from .metrics import read_metrics

# Flags for opening a report in a quiet, offline, throwaway headless chromium (no sync,
# no update checks, no QUIC probes): used by the browser test and the size benchmark.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

IMAGE_FORMATS = ("auto", "jpeg", "png")
# Plotted first, in this order, when present; the other numeric keys follow alphabetically.
PREFERRED_METRICS = ("reward_mean", "accuracy", "valid_box_rate", "kl", "entropy", "loss")
X_KEYS = ("step", "global_step")
LARGE_REPORT_BYTES = 150_000_000  # about 1,500 photo-like episodes at the defaults; opens in ~4 s


# ------------------------------------------------------------------ the CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="the run folder (with metrics.jsonl and/or episodes/), or an episode store folder")
    parser.add_argument("--output", type=Path, default=None, help="the HTML file to write (default RUN_DIR/report.html)")
    parser.add_argument("--page-size", type=int, default=20, help="episodes per gallery page (default 20)")
    parser.add_argument("--max-episodes", type=int, default=2000, help="keep the last N episodes of the store, 0 for all (default 2000)")
    parser.add_argument("--max-side", type=int, default=512, help="longer side of the annotated original in the page (default 512)")
    parser.add_argument("--crop-max-side", type=int, default=384, help="longer side of each crop in the page (default 384)")
    parser.add_argument("--image-format", choices=IMAGE_FORMATS, default="auto", help="auto: the smaller of PNG and JPEG per picture (default)")
    parser.add_argument("--jpeg-quality", type=int, default=75, help="JPEG quality 1-95 (default 75)")
    parser.add_argument("--workers", type=int, default=0, help="threads encoding pictures (default: the CPU count)")
    parser.add_argument("--title", default=None, help="page title (default: the run folder's name)")


def run(args: argparse.Namespace) -> int:
    if not args.run_dir.is_dir():
        print(f"mgpo report: {args.run_dir} is not a folder", file=sys.stderr)
        return 2
    options = ReportOptions(
        page_size=args.page_size,
        max_episodes=args.max_episodes or None,
        max_side=args.max_side,
        crop_max_side=args.crop_max_side,
        image_format=args.image_format,
        jpeg_quality=args.jpeg_quality,
        workers=args.workers or (os.cpu_count() or 1),
        title=args.title,
    )
    output = args.output or args.run_dir / "report.html"
    started = time.perf_counter()
    stats = build_report(args.run_dir, output, options)
    seconds = time.perf_counter() - started
    shown = f"{stats.episodes}" if stats.episodes == stats.episodes_in_store else f"the last {stats.episodes} of {stats.episodes_in_store}"
    print(
        f"wrote {output} ({stats.bytes / 1e6:.1f} MB): {shown} episodes, {stats.images} distinct pictures, "
        f"{stats.charts} metric charts, in {seconds:.1f} s"
    )
    if stats.bytes > LARGE_REPORT_BYTES:
        # Browsers hold the whole file in memory, and V8 cannot make a string over ~512 MB at all.
        print(
            f"mgpo report: {stats.bytes / 1e6:.0f} MB is a heavy page; --max-episodes, --max-side, "
            "--crop-max-side or --jpeg-quality make it lighter",
            file=sys.stderr,
        )
    return 0


@dataclass
class ReportOptions:
    """How the report is built (see ``mgpo report --help``)."""

    page_size: int = 20
    max_episodes: Optional[int] = 2000
    max_side: int = 512
    crop_max_side: int = 384
    image_format: str = "auto"
    jpeg_quality: int = 75
    workers: int = 1
    title: Optional[str] = None

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {self.jpeg_quality}")
        if min(self.max_side, self.crop_max_side) < 16:
            raise ValueError("max_side and crop_max_side must be at least 16 pixels")


@dataclass
class ReportStats:
    path: Path
    bytes: int
    episodes: int  # in the page
    episodes_in_store: int
    images: int  # distinct data URIs
    charts: int


# ------------------------------------------------------------- the pictures
def find_store(run_dir: Path) -> Optional[EpisodeStore]:
    """The episode store of a run folder (``RUN_DIR/episodes``), or the folder itself if it is one."""
    for candidate in (run_dir / "episodes", run_dir):
        if (candidate / EPISODES_FILE).is_file():
            return EpisodeStore(candidate)
    return None


def annotated_original(store: EpisodeStore, record: EpisodeRecord, max_side: Optional[int] = 1024) -> Image.Image:
    """The original with the episode's boxes, drawn by ``draw_boxes`` exactly as ``env.render()`` does.

    The store keeps the original as a thumbnail made with ``draw_boxes``' own
    resize, and the boxes are scaled to it, so with ``max_side`` equal to the
    env's ``render_max_side`` this equals ``env.render()`` pixel for pixel.
    """
    thumbnail = store.open_image(record.original)
    return draw_boxes(thumbnail, record.overlays_for(thumbnail.size), max_side=max_side)


def encode_picture(image: Image.Image, image_format: str = "auto", jpeg_quality: int = 75) -> str:
    """A ``data:`` URI for ``image``: PNG, JPEG, or (``"auto"``) whichever is smaller."""
    encoded: list[tuple[bytes, str]] = []
    if image_format in ("auto", "png"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
        encoded.append((buffer.getvalue(), "image/png"))
    if image_format in ("auto", "jpeg"):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=jpeg_quality, optimize=True, progressive=True)
        encoded.append((buffer.getvalue(), "image/jpeg"))
    data, mime = min(encoded, key=lambda item: len(item[0]))
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)  # area averaging: fine detail shrinks without aliasing


class _Pictures:
    """Encodes pictures once (by pixel hash) and hands out short keys for the page's image table."""

    def __init__(self, store: EpisodeStore, options: ReportOptions) -> None:
        self.store = store
        self.options = options
        self.uris: dict[str, str] = {}  # key -> data URI
        self._by_source: dict[str, str] = {}  # source description -> key
        self._lock = threading.Lock()
        self._thumbnails: "collections.OrderedDict[str, Image.Image]" = collections.OrderedDict()

    def _add(self, source: str, make: Callable[[], Image.Image]) -> str:
        with self._lock:
            key = self._by_source.get(source)
            if key is not None:
                return key
        uri = encode_picture(make(), self.options.image_format, self.options.jpeg_quality)
        key = hashlib.sha256(uri.encode("ascii")).hexdigest()[:16]  # identical encodings share one entry
        with self._lock:
            self.uris.setdefault(key, uri)
            self._by_source[source] = key
        return key

    def _thumbnail(self, image: StoredImage) -> Image.Image:
        # A GRPO group (and a multi-checkpoint evaluation) shows one original many times: decode it once.
        with self._lock:
            cached = self._thumbnails.get(image.sha256)
            if cached is not None:
                self._thumbnails.move_to_end(image.sha256)
                return cached
        decoded = self.store.open_image(image)
        with self._lock:
            self._thumbnails[image.sha256] = decoded
            while len(self._thumbnails) > 16:
                self._thumbnails.popitem(last=False)
        return decoded

    def original(self, record: EpisodeRecord) -> str:
        boxes = record.overlays_for(record.original.size)
        source = json.dumps(["original", record.original.sha256, [(b.box, b.color, b.label) for b in boxes], self.options.max_side])
        return self._add(source, lambda: draw_boxes(self._thumbnail(record.original), boxes, max_side=self.options.max_side))

    def crop(self, image: StoredImage) -> str:
        source = json.dumps(["crop", image.sha256, self.options.crop_max_side])
        return self._add(source, lambda: _fit(self.store.open_image(image), self.options.crop_max_side))


# ------------------------------------------------------------------ metrics
def metric_series(rows: Sequence[dict[str, Any]]) -> tuple[str, dict[str, tuple[list[float], list[float]]]]:
    """``(x_name, {key: (xs, ys)})`` for every key holding finite numbers in some row, sorted by x.

    A resumed or restarted run appends to the same file, so an x (step) can occur
    twice: the later line wins, as it describes the run that went on from there.
    """
    x_key = next((k for k in X_KEYS if any(_number(row.get(k)) is not None for row in rows)), None)
    points: dict[str, dict[float, float]] = {}
    for index, row in enumerate(rows):
        x = _number(row.get(x_key)) if x_key else float(index)
        if x is None:
            continue
        for key, value in row.items():
            y = _number(value)
            if key == x_key or y is None:
                continue
            points.setdefault(key, {})[x] = y
    series = {key: (sorted(by_x), [by_x[x] for x in sorted(by_x)]) for key, by_x in points.items()}
    order = [k for k in PREFERRED_METRICS if k in series] + sorted(k for k in series if k not in PREFERRED_METRICS)
    return (x_key or "line"), {k: series[k] for k in order}


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def metric_charts(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(key, PNG data URI)`` per metric; empty (with a warning) when matplotlib is missing."""
    x_name, series = metric_series(rows)
    if not series:
        return []
    try:
        # The object API with the Agg canvas: no pyplot global state, no display needed.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        warnings.warn("matplotlib is not installed: the report has no metric curves (pip install matplotlib)", stacklevel=2)
        return []
    charts = []
    for key, (xs, ys) in series.items():
        figure = Figure(figsize=(4.2, 2.6), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        many = len(xs) > 60
        axes.plot(xs, ys, color="#4c72b0", linewidth=0.8 if many else 1.4, alpha=0.45 if many else 1.0, marker=None if many else "o", markersize=3)
        if many:  # an exponential moving average shows the trend through per-step noise
            axes.plot(xs, _ema(ys, 2 / (1 + max(5, len(ys) // 20))), color="#c44e52", linewidth=1.6, label="EMA")
            axes.legend(loc="best", fontsize=7, frameon=False)
        axes.set_title(key, fontsize=10)
        axes.set_xlabel(x_name, fontsize=8)
        axes.xaxis.set_major_locator(MaxNLocator(integer=all(float(x).is_integer() for x in xs)))
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        charts.append((key, "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")))
    return charts


def _ema(values: Sequence[float], alpha: float) -> list[float]:
    out, level = [], values[0]
    for value in values:
        level = alpha * value + (1 - alpha) * level
        out.append(level)
    return out


# ----------------------------------------------------------------- episodes
def _episode_data(record: EpisodeRecord, pictures: _Pictures, strings: "_Strings") -> dict[str, Any]:
    """What the page needs of one episode (compact: texts go through a shared string table)."""
    crop_keys = {i: pictures.crop(image) for i, image in enumerate(record.images) if image.kind == "crop"}
    messages = []
    for message in record.messages:
        parts: list[Any] = []
        for part in message.content:
            if part.type == "image" and part.image is not None:
                image = record.images[part.image]
                parts.append({"img": crop_keys.get(part.image), "kind": image.kind, "size": image.size})
            else:
                parts.append(strings.index(part.text or ""))
        messages.append({"role": message.role, "parts": parts})
    return {
        "id": record.episode_id,
        "split": record.split,
        "step": record.step,
        "sample": record.sample_id,
        "category": record.category if record.category is not None else "(none)",
        "question": strings.index(record.question),
        "choices": [strings.index(c) for c in record.choices],
        "gold": record.answer,
        "pred": record.parsed_answer,
        "correct": record.correct,
        "reward": record.reward,
        "done": record.done,
        "box": "none" if record.box_valid is None else ("valid" if record.box_valid else "invalid"),
        "protocol": record.protocol,
        "frame": record.box_frame,
        "osize": record.original_size,
        "orig": pictures.original(record),
        "crops": [{"img": crop_keys[i], "turn": record.images[i].turn, "region": record.images[i].region, "size": record.images[i].size} for i in sorted(crop_keys)],
        "groundings": [
            {"turn": g.turn, "frame": g.model_image_size, "view_box": g.view_box, "crop_box": g.crop_box, "valid": g.valid, "error": g.error}
            for g in record.groundings
        ],
        "messages": messages,
    }


class _Strings:
    """A table of distinct texts: the system prompt and question of every episode are stored once."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()

    def index(self, text: str) -> int:
        with self._lock:
            found = self._index.get(text)
            if found is None:
                found = self._index[text] = len(self.items)
                self.items.append(text)
            return found


def summarise(records: Sequence[EpisodeRecord]) -> list[dict[str, Any]]:
    """Rows of (split, category) -> episodes, accuracy, valid-box rate, mean reward; ``"all"`` rows included.

    Evaluations at several training steps (before and after, say) get a row group each, ``"eval, step N"``:
    one accuracy over all of them would mix the policies being compared.
    """
    eval_steps = {r.step for r in records if r.split == "eval"}
    groups: dict[tuple[str, int, str], list[EpisodeRecord]] = collections.defaultdict(list)
    for record in records:
        category = record.category if record.category is not None else "(none)"
        by_step = record.split == "eval" and len(eval_steps) > 1 and record.step is not None
        split = f"eval, step {record.step}" if by_step else record.split
        order = int(record.step) if by_step else -1  # type: ignore[arg-type]
        for key in ((split, order, "all"), (split, order, category)):
            groups[key].append(record)
    rows = []
    for (split, _, category), items in sorted(groups.items(), key=lambda kv: (kv[0][0].split(",")[0], kv[0][1], kv[0][2] != "all", kv[0][2])):
        grounded = [r for r in items if r.box_valid is not None]
        rows.append(
            {
                "split": split,
                "category": category,
                "episodes": len(items),
                "accuracy": sum(bool(r.correct) for r in items) / len(items),
                "valid_box_rate": (sum(bool(r.box_valid) for r in grounded) / len(grounded)) if grounded else None,
                "reward_mean": sum(r.reward for r in items) / len(items),
            }
        )
    return rows


# ---------------------------------------------------------------- the page
def build_report(run_dir: Path, output: Path, options: Optional[ReportOptions] = None) -> ReportStats:
    """Write the HTML report of ``run_dir`` to ``output`` and say what is in it."""
    options = options or ReportOptions()
    run_dir = Path(run_dir)
    store = find_store(run_dir)
    records: list[EpisodeRecord] = store.load() if store else []
    in_store = len(records)
    if options.max_episodes and in_store > options.max_episodes:
        records = records[-options.max_episodes :]
    charts = metric_charts(read_metrics(run_dir / "metrics.jsonl", missing_ok=True))

    strings = _Strings()
    episodes: list[dict[str, Any]] = []
    if store is not None and records:
        pictures = _Pictures(store, options)
        # PIL releases the GIL while decoding, resizing and encoding, so threads scale.
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            episodes = list(pool.map(lambda r: _episode_data(r, pictures, strings), records))
        images = pictures.uris
    else:
        images = {}

    title = options.title or run_dir.resolve().name
    data = {
        "title": title,
        "pageSize": options.page_size,
        "episodes": episodes,
        "strings": strings.items,
        "images": images,
        "colors": {"predicted": _css(PREDICTED_COLOR), "target": _css(TARGET_COLOR), "invalid": _css(INVALID_COLOR)},
    }
    page = _page(title, data, summarise(records), charts, in_store, len(records), run_dir)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, output)  # a reader never sees half a report
    return ReportStats(output, output.stat().st_size, len(records), in_store, len(images), len(charts))


def _css(color: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*color)


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</script" would end the element early and "<!--" can change how
    # the HTML parser finds that end: writing every "<" as \u003c (the same JSON string;
    # "<" only occurs inside strings) leaves the parser nothing to see.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _summary_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "<p class='muted'>No episodes stored.</p>"

    def pct(value: Optional[float]) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    body = "".join(
        f"<tr class='{'all' if r['category'] == 'all' else ''}'><td>{html.escape(r['split'])}</td><td>{html.escape(r['category'])}</td>"
        f"<td>{r['episodes']}</td><td>{pct(r['accuracy'])}</td><td>{pct(r['valid_box_rate'])}</td><td>{r['reward_mean']:.3f}</td></tr>"
        for r in rows
    )
    return (
        "<table class='summary'><thead><tr><th>split</th><th>category</th><th>episodes</th><th>accuracy</th>"
        f"<th>valid box</th><th>mean reward</th></tr></thead><tbody>{body}</tbody></table>"
    )


def _page(title: str, data: dict[str, Any], summary: Sequence[dict[str, Any]], charts: Sequence[tuple[str, str]], in_store: int, shown: int, run_dir: Path) -> str:
    charts_html = (
        "".join(f"<figure class='chart'><img alt='{html.escape(k)}' src='{uri}'></figure>" for k, uri in charts)
        if charts
        else "<p class='muted'>No <code>metrics.jsonl</code> in this run (or no numeric values in it).</p>"
    )
    note = f" (the last {shown} of {in_store}; <code>--max-episodes 0</code> shows all)" if shown != in_store else ""
    values = {
        "TITLE": html.escape(title),
        "SOURCE": html.escape(str(run_dir)),
        "GENERATED": time.strftime("%Y-%m-%d %H:%M:%S"),
        "NOTE": note,
        "SUMMARY": _summary_table(summary),
        "CHARTS": charts_html,
        "DATA": _json_for_script(data),
    }
    # One pass, so a marker inside the inserted data (a question, a title) is left alone.
    return re.sub(r"__(TITLE|SOURCE|GENERATED|NOTE|SUMMARY|CHARTS|DATA)__", lambda m: values[m.group(1)], _template())


# The page lives in package data beside this module (report_template.html, .css and .js),
# so each part is edited, highlighted and checked as what it is (``node --check`` the
# script); the style and the script are inlined into the HTML so the report stays one file.
@functools.lru_cache(maxsize=None)
def _template() -> str:
    """The page with its style and script inlined, ``__TITLE__`` and the other markers still in it."""
    folder = resources.files(__package__)

    def read(suffix: str) -> str:
        return (folder / f"report_template.{suffix}").read_text(encoding="utf-8")

    # Without their final newline, so an editor that adds or drops one changes no report.
    inline = {"STYLE": read("css").rstrip("\n"), "SCRIPT": read("js").rstrip("\n")}
    # A function as replacement: the script's backslashes are not escapes here.
    return re.sub(r"__(STYLE|SCRIPT)__", lambda m: inline[m.group(1)], read("html"))


def main(argv: Optional[Iterable[str]] = None) -> int:
    """``python -m mgpo_tools.report RUN_DIR`` (the same as ``mgpo report RUN_DIR``)."""
    parser = argparse.ArgumentParser(prog="mgpo report", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
