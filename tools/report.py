"""``mgpo report RUN_DIR``: one self-contained HTML file with a run's curves and episodes.

Inputs, both optional:

* ``RUN_DIR/metrics.jsonl``: one JSON object per training step; every numeric key
  is plotted against ``step`` (or the line number) with matplotlib, as PNG
  embedded in the page. Unreadable lines are skipped with a warning.
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
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from PIL import Image

from mgpo_env.rendering import INVALID_COLOR, PREDICTED_COLOR, TARGET_COLOR, draw_boxes

from .episode_store import EPISODES_FILE, EpisodeRecord, EpisodeStore, StoredImage

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
def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` that are JSON objects (others skipped with a warning)."""
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as error:
                warnings.warn(f"{path}:{number}: skipped an unreadable metrics line: {error}", stacklevel=2)
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


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
    """Rows of (split, category) -> episodes, accuracy, valid-box rate, mean reward; ``"all"`` rows included."""
    groups: dict[tuple[str, str], list[EpisodeRecord]] = collections.defaultdict(list)
    for record in records:
        category = record.category if record.category is not None else "(none)"
        for key in ((record.split, "all"), (record.split, category)):
            groups[key].append(record)
    rows = []
    for (split, category), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all", kv[0][1])):
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
    charts = metric_charts(read_metrics(run_dir / "metrics.jsonl"))

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
    return re.sub(r"__(TITLE|SOURCE|GENERATED|NOTE|SUMMARY|CHARTS|DATA)__", lambda m: values[m.group(1)], _TEMPLATE)


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ · mgpo report</title>
<link rel="icon" href="data:,">
<style>
:root { --fg:#1d2230; --muted:#667085; --line:#d7dbe3; --bg:#f6f7f9; --card:#fff; --ok:#1a7f37; --bad:#c4312b; --warn:#b76e00; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header.top { padding:14px 24px; background:#1d2230; color:#fff; }
header.top h1 { margin:0; font-size:20px; }
header.top .meta { color:#b8c0d0; font-size:12px; }
main { padding:16px 24px; max-width:1500px; margin:auto; }
section { margin-bottom:22px; }
h2 { font-size:16px; margin:8px 0; }
.muted { color:var(--muted); }
table.summary { border-collapse:collapse; background:var(--card); font-size:13px; }
table.summary th, table.summary td { border:1px solid var(--line); padding:3px 10px; text-align:right; }
table.summary td:nth-child(-n+2), table.summary th:nth-child(-n+2) { text-align:left; }
table.summary tr.all td { font-weight:600; background:#eef1f6; }
.charts { display:flex; flex-wrap:wrap; gap:8px; }
.chart { margin:0; background:var(--card); border:1px solid var(--line); }
.chart img { display:block; width:420px; max-width:100%; }
.controls { position:sticky; top:0; z-index:5; display:flex; flex-wrap:wrap; gap:10px; align-items:center; padding:8px 10px; background:#e9ecf2; border:1px solid var(--line); border-radius:6px; }
.controls label { font-size:13px; }
.controls select, .controls input { font:inherit; font-size:13px; }
.pager { display:flex; gap:6px; align-items:center; margin-left:auto; }
.pager button { font:inherit; padding:2px 10px; }
#count { font-weight:600; }
.legend span { display:inline-block; width:10px; height:10px; margin:0 3px 0 8px; vertical-align:middle; }
.episode { background:var(--card); border:1px solid var(--line); border-left:6px solid var(--muted); border-radius:6px; margin:12px 0; padding:10px 12px; }
.episode.correct { border-left-color:var(--ok); }
.episode.incorrect { border-left-color:var(--bad); }
.episode > .head { display:flex; flex-wrap:wrap; gap:6px 14px; align-items:baseline; margin-bottom:8px; }
.episode > .head .num { font-weight:700; }
.tag { font-size:12px; padding:1px 7px; border-radius:10px; background:#eef1f6; }
.tag.ok { background:#dcf3e3; color:var(--ok); font-weight:600; }
.tag.bad { background:#fde2e1; color:var(--bad); font-weight:600; }
.tag.warn { background:#fff0d6; color:var(--warn); }
.body { display:flex; flex-wrap:wrap; gap:12px; align-items:flex-start; }
figure { margin:0; }
figure img { display:block; max-width:100%; cursor:zoom-in; border:1px solid var(--line); image-rendering:auto; }
figure.orig img { width:380px; }
figure.crop img { max-height:260px; max-width:300px; }
figcaption { font-size:12px; color:var(--muted); max-width:380px; }
.crops { display:flex; flex-wrap:wrap; gap:8px; }
.qa { flex:1; min-width:280px; }
.qa .q { font-weight:600; margin-bottom:4px; }
.qa ol { margin:4px 0 8px 0; padding-left:26px; list-style:upper-alpha; }
.qa li.gold { color:var(--ok); font-weight:600; }
.qa li.picked:not(.gold) { color:var(--bad); text-decoration:line-through; }
table.g { border-collapse:collapse; font-size:12px; }
table.g td, table.g th { border:1px solid var(--line); padding:2px 6px; text-align:left; }
details { margin-top:8px; }
details summary { cursor:pointer; color:#3559b7; }
.msg { border-top:1px solid var(--line); padding:6px 0; }
.msg .role { font-size:11px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); }
.msg.assistant .role { color:#3559b7; }
.msg pre { white-space:pre-wrap; word-break:break-word; margin:2px 0; font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace; }
.msg img { max-height:160px; border:1px solid var(--line); cursor:zoom-in; }
.ph { display:inline-block; font-size:12px; padding:2px 6px; background:#eef1f6; border-radius:4px; color:var(--muted); }
#empty { display:none; padding:20px; text-align:center; color:var(--muted); }
#zoom { display:none; position:fixed; inset:0; background:rgba(0,0,0,.85); z-index:10; align-items:center; justify-content:center; cursor:zoom-out; }
#zoom img { max-width:96vw; max-height:96vh; image-rendering:pixelated; background:#fff; }
</style>
</head>
<body>
<header class="top"><h1>__TITLE__</h1><div class="meta">mgpo report of <code>__SOURCE__</code>, generated __GENERATED__</div></header>
<main>
<section id="summary"><h2>Summary</h2>__SUMMARY__</section>
<section id="curves"><h2>Training curves</h2><div class="charts">__CHARTS__</div></section>
<section id="gallery"><h2>Episodes__NOTE__</h2>
<div class="controls">
  <label>answer <select id="f-correct"><option value="all">all</option><option value="correct">correct only</option><option value="incorrect">incorrect only</option></select></label>
  <label>box <select id="f-box"><option value="all">all</option><option value="valid">valid</option><option value="invalid">invalid</option><option value="none">no box</option></select></label>
  <label>category <select id="f-category"><option value="all">all</option></select></label>
  <label>split <select id="f-split"><option value="all">all</option></select></label>
  <label>search <input id="f-text" type="search" placeholder="sample id, question, reply" size="22"></label>
  <span class="legend muted"><span id="lg-pred"></span>predicted<span id="lg-target"></span>annotated<span id="lg-invalid"></span>rejected</span>
  <div class="pager"><span id="count" data-matching="0" data-total="0"></span>
    <button id="prev" type="button">&#8249; prev</button><span id="page-info"></span><button id="next" type="button">next &#8250;</button></div>
</div>
<div id="episodes"></div>
<div id="empty"></div>
</section>
</main>
<div id="zoom"><img alt="enlarged picture"></div>
<script type="application/json" id="report-data">__DATA__</script>
<script>
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const EPISODES = DATA.episodes, S = DATA.strings, IMAGES = DATA.images;
  EPISODES.forEach(function (e, i) { e.index = i + 1; });
  const $ = function (id) { return document.getElementById(id); };
  const state = { page: 0, matching: EPISODES };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);  // never innerHTML: model text is untrusted
    return node;
  }
  function fmtBox(b) { return b ? "[" + b.map(function (v) { return Math.round(v * 10) / 10; }).join(", ") + "]" : "–"; }
  function uniq(key) { return Array.from(new Set(EPISODES.map(function (e) { return e[key]; }))).sort(); }
  function fillSelect(id, values) {
    const select = $(id);
    values.forEach(function (v) { const o = el("option", null, v); o.value = v; select.appendChild(o); });
  }
  function picture(key, alt) {
    const img = el("img");
    img.alt = alt;
    img.decoding = "async";
    img.src = IMAGES[key];  // data URIs are attached only for the page shown, so only it is decoded
    img.addEventListener("click", function () { $("zoom").querySelector("img").src = img.src; $("zoom").style.display = "flex"; });
    return img;
  }

  function card(e) {
    const art = el("article", "episode " + (e.correct === true ? "correct" : e.correct === false ? "incorrect" : "running"));
    art.dataset.id = e.id;
    const head = el("div", "head");
    head.appendChild(el("span", "num", "#" + e.index));
    head.appendChild(el("span", null, e.sample));
    head.appendChild(el("span", e.correct ? "tag ok" : e.correct === false ? "tag bad" : "tag", e.correct ? "correct" : e.correct === false ? "incorrect" : "not finished"));
    head.appendChild(el("span", "tag", "reward " + e.reward));
    head.appendChild(el("span", "tag" + (e.box === "invalid" ? " warn" : ""), e.box === "none" ? "no box" : "box " + e.box));
    head.appendChild(el("span", "tag", e.category));
    head.appendChild(el("span", "tag", e.split + (e.step === null ? "" : " · step " + e.step)));
    head.appendChild(el("span", "muted", e.protocol + " · boxes in " + e.frame));
    art.appendChild(head);

    const body = el("div", "body");
    const orig = el("figure", "orig");
    orig.appendChild(picture(e.orig, "original with boxes"));
    orig.appendChild(el("figcaption", null, "original " + e.osize[0] + "×" + e.osize[1] + " with the predicted and annotated boxes"));
    body.appendChild(orig);
    const crops = el("div", "crops");
    e.crops.forEach(function (c) {
      const fig = el("figure", "crop");
      fig.appendChild(picture(c.img, "crop of turn " + c.turn));
      fig.appendChild(el("figcaption", null, "turn " + c.turn + " crop " + fmtBox(c.region) + " shown at " + c.size[0] + "×" + c.size[1]));
      crops.appendChild(fig);
    });
    if (!e.crops.length) crops.appendChild(el("span", "ph", "no crop"));
    body.appendChild(crops);

    const qa = el("div", "qa");
    qa.appendChild(el("div", "q", S[e.question]));
    if (e.choices.length) {
      const ol = el("ol");
      e.choices.forEach(function (c, i) {
        const letter = String.fromCharCode(65 + i);
        const li = el("li", (letter === e.gold ? "gold " : "") + (letter === e.pred ? "picked" : ""), S[c]);
        ol.appendChild(li);
      });
      qa.appendChild(ol);
    }
    qa.appendChild(el("div", null, "gold " + e.gold + " · parsed answer " + (e.pred === null ? "none" : e.pred)));
    if (e.groundings.length) {
      const t = el("table", "g");
      const hr = el("tr");
      ["turn", "box (view px)", "frame", "crop (original px)", "valid"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
      t.appendChild(hr);
      e.groundings.forEach(function (g) {
        const tr = el("tr");
        [g.turn, fmtBox(g.view_box), g.frame[0] + "×" + g.frame[1], fmtBox(g.crop_box), g.valid ? "yes" : "no: " + g.error].forEach(function (v) { tr.appendChild(el("td", null, v)); });
        t.appendChild(tr);
      });
      qa.appendChild(t);
    }
    body.appendChild(qa);
    art.appendChild(body);

    const details = el("details");
    details.appendChild(el("summary", null, "transcript (" + e.messages.length + " messages)"));
    details.addEventListener("toggle", function () {  // built on first open: most transcripts are never read
      if (!details.open || details.dataset.built) return;
      details.dataset.built = "1";
      e.messages.forEach(function (m) {
        const div = el("div", "msg " + m.role);
        div.appendChild(el("div", "role", m.role));
        m.parts.forEach(function (p) {
          if (typeof p === "number") { div.appendChild(el("pre", null, S[p])); return; }
          if (p.img) div.appendChild(picture(p.img, p.kind));
          else div.appendChild(el("span", "ph", "<image " + p.size[0] + "×" + p.size[1] + " " + p.kind + (p.kind === "original" ? ": the whole image, downsized" : "") + ">"));
        });
        details.appendChild(div);
      });
    });
    art.appendChild(details);
    return art;
  }

  function matches(e, f) {
    if (f.correct === "correct" && e.correct !== true) return false;
    if (f.correct === "incorrect" && e.correct === true) return false;
    if (f.box !== "all" && e.box !== f.box) return false;
    if (f.category !== "all" && e.category !== f.category) return false;
    if (f.split !== "all" && e.split !== f.split) return false;
    if (f.text) {
      if (e.haystack === undefined) {
        e.haystack = [e.sample, S[e.question]].concat(e.messages.filter(function (m) { return m.role === "assistant"; })
          .map(function (m) { return m.parts.map(function (p) { return typeof p === "number" ? S[p] : ""; }).join(""); })).join("\n").toLowerCase();
      }
      if (e.haystack.indexOf(f.text) < 0) return false;
    }
    return true;
  }

  function applyFilters() {
    const f = { correct: $("f-correct").value, box: $("f-box").value, category: $("f-category").value, split: $("f-split").value, text: $("f-text").value.trim().toLowerCase() };
    state.matching = EPISODES.filter(function (e) { return matches(e, f); });
    state.page = 0;
    render();
  }

  function pages() { return Math.max(1, Math.ceil(state.matching.length / DATA.pageSize)); }

  function render() {
    const list = $("episodes");
    list.textContent = "";
    const start = state.page * DATA.pageSize;
    const shown = state.matching.slice(start, start + DATA.pageSize);
    const fragment = document.createDocumentFragment();
    shown.forEach(function (e) { fragment.appendChild(card(e)); });
    list.appendChild(fragment);
    const count = $("count");
    count.textContent = state.matching.length + " of " + EPISODES.length + " episodes";
    count.dataset.matching = state.matching.length;
    count.dataset.total = EPISODES.length;
    $("page-info").textContent = "page " + (state.page + 1) + " / " + pages();
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages() - 1;
    $("empty").style.display = state.matching.length ? "none" : "block";
    $("empty").textContent = EPISODES.length ? "No episode matches these filters." : "No episodes in this run (no episodes/ store next to it).";
    document.body.dataset.page = state.page + 1;
    document.body.dataset.pages = pages();
  }

  fillSelect("f-category", uniq("category"));
  fillSelect("f-split", uniq("split"));
  $("lg-pred").style.background = DATA.colors.predicted;
  $("lg-target").style.background = DATA.colors.target;
  $("lg-invalid").style.background = DATA.colors.invalid;
  ["f-correct", "f-box", "f-category", "f-split"].forEach(function (id) { $(id).addEventListener("change", applyFilters); });
  let typing = null;
  $("f-text").addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(applyFilters, 150); });
  $("prev").addEventListener("click", function () { if (state.page > 0) { state.page--; render(); window.scrollTo(0, $("gallery").offsetTop); } });
  $("next").addEventListener("click", function () { if (state.page < pages() - 1) { state.page++; render(); window.scrollTo(0, $("gallery").offsetTop); } });
  $("zoom").addEventListener("click", function () { $("zoom").style.display = "none"; });
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape") $("zoom").style.display = "none"; });
  render();
  document.body.dataset.ready = "1";
  if (window.performance && performance.mark) performance.mark("mgpo-first-page");
})();
</script>
</body>
</html>
"""


def main(argv: Optional[Iterable[str]] = None) -> int:
    """``python -m mgpo_tools.report RUN_DIR`` (the same as ``mgpo report RUN_DIR``)."""
    parser = argparse.ArgumentParser(prog="mgpo report", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
