"""What the dataset loader tests share: dataset files built in ``tmp_path``, and two checks.

The builders write each benchmark's published layout: small generated JPEGs (a
drawn rectangle marks the target) plus the JSON / JSONL / TSV files. Nothing is
downloaded. The checks are the promises every loader makes: a bad row raises or
is skipped (:func:`one_bad_row`), and ``gym.make`` can run an episode on the
data (:func:`episode`).

A plain module rather than a ``tests/envs/conftest.py``: the suite runs with
``--doctest-modules`` in prepend import mode, where every ``conftest.py`` is
imported as the module ``conftest``, so a second one in a sub-folder clashes with
``tests/conftest.py`` (an "import file mismatch", and ``from conftest import
SMALL_TASK`` in other tests may get the wrong file). Test modules in this folder
import it by name; pytest puts the folder on ``sys.path``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image, ImageDraw

import mgpo_env  # noqa: F401  (registers mgpo/HighResVQA-v0)
from mgpo_datasets.dataset_base import DataWarning, LoadedDataset
from mgpo_datasets.sample import DataError

Size = tuple[int, int]
Rect = tuple[int, int, int, int]

# ---------------------------------------------------------------------------
# images and generic files


def jpeg_bytes(size: Size = (640, 480), box: Rect = (100, 120, 150, 160), color: tuple[int, int, int] = (220, 30, 30),
               quality: int = 90, noise: bool = False) -> bytes:
    """A JPEG of a grey image with a filled rectangle at ``box`` (x1, y1, x2, y2).

    ``noise=True`` fills the background with random pixels, which makes the file
    large (HR-Bench's over-128-KiB cells) and makes truncation visible to a decoder.
    """
    if noise:
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    else:
        image = Image.new("RGB", size, (200, 200, 200))
    ImageDraw.Draw(image).rectangle(box, fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_jpeg(path: Path, size: Size = (640, 480), box: Rect = (100, 120, 150, 160), **kwargs: Any) -> Path:
    """:func:`jpeg_bytes` written to ``path``, its folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(size, box, **kwargs))
    return path


def write_truncated_jpeg(path: Path, size: Size = (640, 480)) -> Path:
    """A JPEG whose header is intact but whose scan data is cut to a third.

    Its size reads fine (loaders and ``image_size`` read headers only); decoding
    fails, which is what the "names the file and row" tests need.
    """
    data = jpeg_bytes(size, noise=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 3])
    return path


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    """One JSON value a line; a ``str`` row is written as it is (blank or broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# V* Bench

# folder, name, size, bbox (x, y, w, h) list, question, options (first is correct), targets
VSTAR_ITEMS: list[tuple[str, str, Size, list[list[int]], str, list[str], list[str]]] = [
    ("direct_attributes", "sa_1", (640, 480), [[100, 120, 50, 40]], "What is the color of the cup?",
     ["red", "blue", "green", "black"], ["cup"]),
    ("direct_attributes", "sa_2", (800, 600), [[300, 200, 60, 80]], "What is the material of the glove?",
     ["leather", "rubber", "cotton", "plastic"], ["glove"]),
    ("relative_position", "sa_3", (1024, 768), [[10, 20, 30, 40], [500, 400, 100, 50]],
     "Is the dog on the left or right side of the cat?", ["left", "right"], ["dog", "cat"]),
]


def vstar_text(question: str, choices: Sequence[str]) -> str:
    """A ``test_questions.jsonl`` text: question, lettered options, V*'s instruction."""
    lines = [question] + [f"({'ABCD'[i]}) {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer with the option's letter from the given choices directly."


def make_vstar(root: Path, with_questions: bool = True) -> Path:
    """V* Bench's folders for :data:`VSTAR_ITEMS`: each image with its ``NAME.json``, and ``test_questions.jsonl``.

    The questions file puts the correct option at a different letter per question,
    as the benchmark does, so a loader that assumed "A" would fail.
    """
    for folder, name, size, bboxes, question, options, targets in VSTAR_ITEMS:
        x, y, w, h = bboxes[0]
        write_jpeg(root / folder / f"{name}.jpg", size, (x, y, x + w, y + h))
        (root / folder / f"{name}.json").write_text(
            json.dumps({"target_object": targets, "bbox": bboxes, "question": question, "options": options})
        )
    if with_questions:
        rows = []
        orders = {"sa_1": [1, 0, 2, 3], "sa_2": [2, 3, 0, 1], "sa_3": [1, 0]}
        for qid, (folder, name, _, _, question, options, _) in enumerate(VSTAR_ITEMS):
            order = orders[name]
            choices = [options[i] for i in order]
            label = "ABCD"[order.index(0)]
            rows.append({"image": f"{folder}/{name}.jpg", "text": vstar_text(question, choices),
                         "category": folder, "question_id": qid, "label": label})
        write_jsonl(root / "test_questions.jsonl", rows)
    return root


# ---------------------------------------------------------------------------
# MME-RealWorld


def mme_record(i: int, image: str, **overrides: Any) -> dict[str, Any]:
    """One record in MME-RealWorld's published keys."""
    record = {
        "Question_id": f"perception/remote_sensing/color/{i:04d}",
        "Image": image,
        "Text": f"What color is the roof of building {i}?",
        "Question Type": "Multiple Choice",
        "Answer choices": ["(A) red", "(B) blue", "(C) green", "(D) white", "(E) The image does not feature the roof."],
        "Ground truth": "B",
        "Task": "Perception",
        "Subtask": "Remote Sensing",
        "Category": "color",
    }
    record.update(overrides)
    return record


def make_mme(root: Path, records: Optional[list[Any]] = None, n: int = 3) -> Path:
    """``n`` images (widths 640, 704, ...) and ``MME_RealWorld.json`` (``records``, or one per image)."""
    for i in range(n):
        write_jpeg(root / "remote_sensing" / f"{i:05d}.jpg", (640 + 64 * i, 480))
    if records is None:
        records = [mme_record(i, f"remote_sensing/{i:05d}.jpg") for i in range(n)]
    path = root / "MME_RealWorld.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# HR-Bench

HR_HEADER = ["index", "question", "A", "B", "C", "D", "answer", "category", "cycle_category", "image"]


def hr_row(index: int, image_b64: str, question: Optional[str] = None, answer: str = "B",
           options: Sequence[str] = ("Red", "Blue", "Green", "Black"), category: str = "FSP") -> list[str]:
    """One TSV row's cells, in :data:`HR_HEADER`'s order."""
    return [str(index), question or f"What is the color of object {index}?", *options, answer, category,
            f"cycle_{index % 4}", image_b64]


def write_hr_tsv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HR_HEADER) -> Path:
    """A TSV quoted minimally, as pandas' ``to_csv(sep="\\t")`` writes HR-Bench's files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def b64(data: bytes) -> str:
    """Base64 text of image bytes, as HR-Bench's image column holds it."""
    return base64.b64encode(data).decode("ascii")


def make_hr(root: Path) -> Path:
    """``hr_bench_4k.tsv`` with four rows that exercise the reader's hard cases."""
    rows = [
        hr_row(0, b64(jpeg_bytes((640, 480)))),
        hr_row(1, b64(jpeg_bytes((800, 600))), answer="D", category="FCP"),
        # a quoted question with a tab, a line break and quotes, and an image over
        # csv's default 128 KiB field limit
        hr_row(2, b64(jpeg_bytes((700, 500), noise=True, quality=95)), question='Read the "EXIT"\tsign:\nwhat does it say?', answer="A"),
        # VLMEvalKit style: the image cell names the row whose image it shares
        hr_row(3, "0", answer="C"),
    ]
    return write_hr_tsv(root / "hr_bench_4k.tsv", rows)


# ---------------------------------------------------------------------------
# checks every loader must pass


def one_bad_row(load: Callable[..., LoadedDataset], path: Path, message: str, where: str) -> LoadedDataset:
    """Check a file of three rows, one of them bad, both ways; return the skip-mode dataset.

    Every loader promises the same (:mod:`mgpo_datasets.dataset_base`): by default
    the bad row raises a DataError matching ``message`` and naming ``where`` (file
    and row); with ``on_error="skip"`` it is dropped with one DataWarning.
    """
    with pytest.raises(DataError, match=message) as info:
        load(path)
    assert where in str(info.value)
    with pytest.warns(DataWarning, match="skipped 1 of 3 rows"):
        return load(path, on_error="skip")


def episode(spec: Any, sample_id: str, size: Size, box: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
    """``(env, obs, info)`` after a checked reset of ``gym.make("mgpo/HighResVQA-v0", dataset=spec)``.

    That is how users meet a loader: the reset must find the sample, keep its
    original size and box, and show a non-empty image. The caller closes the env
    (it may step it first).
    """
    env = gym.make("mgpo/HighResVQA-v0", dataset=spec, observation_image_shape=(1344, 1344), **kwargs)
    try:
        obs, info = env.reset(seed=0, options={"sample_id": sample_id})
        assert info["sample_id"] == sample_id
        assert info["original_image_size"] == size
        assert info["target_box"] == box
        assert obs["image"].dtype == np.uint8 and obs["image"].shape == (1344, 1344, 3)
        w, h = obs["image_size"]
        assert 0 < w <= 1344 and 0 < h <= 1344 and obs["image"][:h, :w].any()
        return env, obs, info
    except Exception:
        env.close()
        raise
