"""``mgpo data SPEC``: load a dataset, check it, and summarise it.

The command loads ``SPEC`` (any spec :func:`mgpo_datasets.resolve_dataset`
accepts, e.g. ``vstar:/data/vstar_bench``) with ``on_error="skip"`` so that every
bad row is found, not just the first, then prints:

* the number of samples and the samples per category;
* how many options the questions have (``4 options: 115``, ``free-form: 12``);
* how many samples have annotated boxes;
* with ``--check-images``: every image's header is read (width x height, no pixel
  decoding), giving the size distribution (min / median / max) and finding missing
  or unreadable images and boxes that lie outside their image; ``--decode``
  decodes every image fully, which also finds truncated files (slower);
* the bad rows with their reasons (the first 20; ``--max-bad``).

The exit code is 0 when no row is bad, else 1. ``--json`` prints the summary as
one JSON object instead.

Example::

    $ mgpo data vstar:/data/vstar_bench --check-images
    dataset vstar:/data/vstar_bench
      source:      /data/vstar_bench/test_questions.jsonl
      samples:     191 (loaded in 0.03 s)
      categories:  direct_attributes 115, relative_position 76
      choices:     4 options 115, 2 options 76
      with boxes:  191 of 191
      images:      191 headers read in 0.41 s; width 1000 / 2246 / 6000 (min / median / max), ...
      bad rows:    0

From Python: ``summary = check_dataset("jsonl:data/train.jsonl", check_images=True)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections import Counter
from typing import Any, Optional, Sequence

from .sample import DataError, Sample

from .dataset_base import DataWarning, EmptyDatasetError
from .image_files import ImageLoadError, decode_image, image_size
from .registry import dataset_entry, resolve_dataset

DEFAULT_MAX_BAD = 20
# A box may end on the image border; allow rounding in annotations.
BOX_TOLERANCE_PX = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``mgpo data`` arguments to ``parser``."""
    parser.add_argument("spec", help="dataset spec, e.g. vstar:DIR, mme-realworld:FILE.json, hr-bench:FILE.tsv, jsonl:FILE, hf:DIR")
    parser.add_argument("--check-images", action="store_true", help="read every image's header: sizes, missing or unreadable images, boxes outside the image")
    parser.add_argument("--decode", action="store_true", help="decode every image fully (implies --check-images; finds truncated files)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--max-bad", type=int, default=DEFAULT_MAX_BAD, metavar="N", help=f"bad rows to list (default {DEFAULT_MAX_BAD})")
    parser.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE",
        help="a loader keyword argument, e.g. -o image_root=/data/images or -o shuffle_choices_seed=0 (VALUE is read as JSON when it parses)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``mgpo data``; returns the exit code (0: no bad rows, 1: bad rows or no dataset)."""
    try:
        options = parse_options(args.option)
    except ValueError as error:
        print(f"error: {error}")
        return 1
    summary = check_dataset(args.spec, check_images=args.check_images or args.decode, decode=args.decode,
                            max_bad=args.max_bad, **options)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=False, default=str))
    else:
        print(format_summary(summary))
    return 0 if summary["error"] is None and summary["bad_rows"] == 0 else 1


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["image_root=/x", "shuffle_choices_seed=0"]`` -> ``{"image_root": "/x", "shuffle_choices_seed": 0}``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {item!r} must look like KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def _accepts_on_error(spec: str) -> bool:
    """Whether the loader for ``spec`` takes ``on_error`` (the synthetic task does not)."""
    try:
        return dataset_entry(spec).accepts_on_error
    except ValueError:
        return False


def check_dataset(
    spec: str,
    *,
    check_images: bool = False,
    decode: bool = False,
    max_bad: int = DEFAULT_MAX_BAD,
    **dataset_kwargs: Any,
) -> dict[str, Any]:
    """Load ``spec`` with ``on_error="skip"`` and return the summary :func:`run` prints."""
    summary: dict[str, Any] = {
        "spec": spec, "source": None, "error": None, "count": 0, "load_seconds": None,
        "categories": {}, "choices": {}, "with_boxes": 0, "images": None,
        "bad_rows": 0, "bad": [],
    }
    bad: list[tuple[str, str]] = []
    kwargs = dict(dataset_kwargs)
    if _accepts_on_error(spec):
        kwargs.setdefault("on_error", "skip")
    start = time.perf_counter()
    dataset: Optional[Sequence[Sample]] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # we list the skipped rows ourselves
            dataset = resolve_dataset(spec, **kwargs)
    except EmptyDatasetError as error:
        summary["error"] = str(error)
        bad.extend(error.skipped)
    except (DataError, ValueError, TypeError, ImportError, OSError) as error:
        summary["error"] = f"{type(error).__name__}: {error}"
    summary["load_seconds"] = round(time.perf_counter() - start, 4)

    if dataset is not None:
        bad.extend(getattr(dataset, "skipped", []))
        summary["source"] = getattr(dataset, "source", None)
        samples = list(dataset)
        summary["count"] = len(samples)
        categories = Counter(s.category if s.category is not None else "(none)" for s in samples)
        summary["categories"] = dict(categories.most_common())
        choices = Counter(len(s.choices) for s in samples)
        summary["choices"] = {(f"{n} options" if n else "free-form"): c for n, c in sorted(choices.items(), reverse=True)}
        summary["with_boxes"] = sum(1 for s in samples if s.target_boxes)
        if check_images:
            summary["images"] = _check_images(samples, decode, bad)

    summary["bad_rows"] = len(bad)
    summary["bad"] = [{"where": where, "reason": reason} for where, reason in bad[: max(0, max_bad)]]
    return summary


def read_image_size(ref: Any, *, decode: bool, context: str) -> tuple[int, int]:
    """An image's (width, height) from its header, or by decoding it whole (which also finds truncated files)."""
    return decode_image(ref, context=context).size if decode else image_size(ref, context=context)


def _check_images(samples: Sequence[Sample], decode: bool, bad: list[tuple[str, str]]) -> dict[str, Any]:
    start = time.perf_counter()
    sizes: list[tuple[int, int]] = []
    for sample in samples:
        context = f"sample {sample.sample_id!r}: "
        try:
            size = read_image_size(sample.image, decode=decode, context=context)
        except ImageLoadError as error:
            bad.append((f"sample {sample.sample_id!r}", str(error)))
            continue
        sizes.append(size)
        width, height = size
        for box in sample.target_boxes:
            x1, y1, x2, y2 = box
            if x1 < -BOX_TOLERANCE_PX or y1 < -BOX_TOLERANCE_PX or x2 > width + BOX_TOLERANCE_PX or y2 > height + BOX_TOLERANCE_PX:
                bad.append((f"sample {sample.sample_id!r}", f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {width}x{height} image"))
                break
    result: dict[str, Any] = {"mode": "decode" if decode else "header", "checked": len(sizes),
                              "seconds": round(time.perf_counter() - start, 4)}
    if sizes:
        widths = [w for w, _ in sizes]
        heights = [h for _, h in sizes]
        smallest = min(sizes, key=lambda s: s[0] * s[1])
        largest = max(sizes, key=lambda s: s[0] * s[1])
        result.update({
            "width": {"min": min(widths), "median": statistics.median(widths), "max": max(widths)},
            "height": {"min": min(heights), "median": statistics.median(heights), "max": max(heights)},
            "smallest": f"{smallest[0]}x{smallest[1]}",
            "largest": f"{largest[0]}x{largest[1]}",
        })
    return result


def stored_image(ref: Any) -> bool:
    """Whether an image reference is stored data (a file or encoded bytes) rather than made on demand (the synthetic task)."""
    from pathlib import Path

    from .dataset_base import FileImage

    return isinstance(ref, (str, Path, bytes, bytearray, FileImage))


def unreadable_images(
    dataset: Sequence[Sample], *, decode: bool = False, stored_only: bool = True, progress: bool = False
) -> list[tuple[int, str, str]]:
    """``(index, sample id, reason)`` for every sample whose image cannot be read; nothing is changed.

    Reading headers (the default) finds missing, empty and non-image files in about a
    millisecond each; ``decode=True`` decodes every image, which also finds truncated
    files, with a progress bar when ``progress``. ``stored_only`` leaves out images made
    on demand (the synthetic task draws them: there is no file to check).
    """
    indices = range(len(dataset))
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="decoding images" if decode else "reading image headers", unit="image", dynamic_ncols=True)
    bad: list[tuple[int, str, str]] = []
    for index in indices:
        sample = dataset[index]
        if stored_only and not stored_image(sample.image):
            continue
        context = f"sample {sample.sample_id!r} (index {index}): "
        try:
            read_image_size(sample.image, decode=decode, context=context)
        except (ImageLoadError, DataError) as error:
            bad.append((index, sample.sample_id, str(error)))
    return bad


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable report of a :func:`check_dataset` summary."""
    lines = [f"dataset {summary['spec']}"]
    if summary["source"]:
        lines.append(f"  source:      {summary['source']}")
    if summary["error"]:
        lines.append(f"  error:       {summary['error']}")
    lines.append(f"  samples:     {summary['count']} (loaded in {summary['load_seconds']:.2f} s)")
    if summary["count"]:
        lines.append("  categories:  " + ", ".join(f"{name} {n}" for name, n in summary["categories"].items()))
        lines.append("  choices:     " + ", ".join(f"{name} {n}" for name, n in summary["choices"].items()))
        lines.append(f"  with boxes:  {summary['with_boxes']} of {summary['count']}")
        images = summary["images"]
        if images is None:
            lines.append("  images:      not read (use --check-images for sizes and unreadable images)")
        elif images["checked"]:
            verb = "decoded" if images["mode"] == "decode" else "headers read"
            w, h = images["width"], images["height"]
            lines.append(
                f"  images:      {images['checked']} {verb} in {images['seconds']:.2f} s; "
                f"width {w['min']} / {w['median']:g} / {w['max']}, height {h['min']} / {h['median']:g} / {h['max']} "
                f"(min / median / max); smallest {images['smallest']}, largest {images['largest']}"
            )
        else:
            lines.append("  images:      none could be read")
    lines.append(f"  bad rows:    {summary['bad_rows']}")
    for entry in summary["bad"]:
        lines.append(f"    - {entry['where']}: {entry['reason']}")
    hidden = summary["bad_rows"] - len(summary["bad"])
    if hidden > 0:
        lines.append(f"    ... and {hidden} more (--max-bad N, or --json)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry point: ``python -m mgpo_datasets.data_check SPEC``."""
    parser = argparse.ArgumentParser(prog="mgpo data", description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
