"""Dataset loaders: V* Bench, MME-RealWorld, HR-Bench, JSONL, Hugging Face, and `mgpo data`.

Every fixture is built here in ``tmp_path`` in the benchmark's published layout:
small generated JPEGs (a drawn rectangle marks the target) plus the JSON / JSONL /
TSV files. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import tracemalloc
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image, ImageDraw

import mgpo_env  # noqa: F401  (registers mgpo/HighResVQA-v0)
from mgpo_datasets.registry import resolve_dataset
from mgpo_datasets.image_files import ImageLoadError, decode_image, image_size
from mgpo_datasets.sample import DataError, Sample
from mgpo_datasets import data_check, hr_bench
from mgpo_datasets.dataset_base import (
    DataWarning,
    EmptyDatasetError,
    FileImage,
    LoadedDataset,
    RowCollector,
    parse_boxes,
    shuffle_choices,
    split_question_and_options,
    strip_option_prefix,
)
from mgpo_datasets.hf_dataset import load_hf_dataset
from mgpo_datasets.hr_bench import load_hr_bench
from mgpo_datasets.jsonl_dataset import load_jsonl
from mgpo_datasets.mme_realworld import load_mme_realworld
from mgpo_datasets.vstar import load_vstar

# ---------------------------------------------------------------------------
# fixture builders


def jpeg_bytes(size=(640, 480), box=(100, 120, 150, 160), color=(220, 30, 30), quality=90, noise=False) -> bytes:
    """A JPEG with a filled rectangle at ``box`` (x1, y1, x2, y2)."""
    if noise:
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    else:
        image = Image.new("RGB", size, (200, 200, 200))
    ImageDraw.Draw(image).rectangle(box, fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_jpeg(path: Path, size=(640, 480), box=(100, 120, 150, 160), **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(size, box, **kwargs))
    return path


def write_truncated_jpeg(path: Path, size=(640, 480)) -> Path:
    data = jpeg_bytes(size, noise=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 3])  # header intact, scan data cut short
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


VSTAR_ITEMS = [
    # folder, name, size, bbox (x, y, w, h) list, question, options (first is correct), targets
    ("direct_attributes", "sa_1", (640, 480), [[100, 120, 50, 40]], "What is the color of the cup?",
     ["red", "blue", "green", "black"], ["cup"]),
    ("direct_attributes", "sa_2", (800, 600), [[300, 200, 60, 80]], "What is the material of the glove?",
     ["leather", "rubber", "cotton", "plastic"], ["glove"]),
    ("relative_position", "sa_3", (1024, 768), [[10, 20, 30, 40], [500, 400, 100, 50]],
     "Is the dog on the left or right side of the cat?", ["left", "right"], ["dog", "cat"]),
]


def vstar_text(question, choices):
    lines = [question] + [f"({'ABCD'[i]}) {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer with the option's letter from the given choices directly."


def make_vstar(root: Path, with_questions: bool = True) -> Path:
    for folder, name, size, bboxes, question, options, targets in VSTAR_ITEMS:
        x, y, w, h = bboxes[0]
        write_jpeg(root / folder / f"{name}.jpg", size, (x, y, x + w, y + h))
        (root / folder / f"{name}.json").write_text(
            json.dumps({"target_object": targets, "bbox": bboxes, "question": question, "options": options})
        )
    if with_questions:
        rows = []
        # The benchmark's order puts the correct option at different letters.
        orders = {"sa_1": [1, 0, 2, 3], "sa_2": [2, 3, 0, 1], "sa_3": [1, 0]}
        for qid, (folder, name, size, bboxes, question, options, targets) in enumerate(VSTAR_ITEMS):
            order = orders[name]
            choices = [options[i] for i in order]
            label = "ABCD"[order.index(0)]
            rows.append({"image": f"{folder}/{name}.jpg", "text": vstar_text(question, choices),
                         "category": folder, "question_id": qid, "label": label})
        write_jsonl(root / "test_questions.jsonl", rows)
    return root


def mme_record(i, image, **overrides):
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


def make_mme(root: Path, records=None, n=3) -> Path:
    for i in range(n):
        write_jpeg(root / "remote_sensing" / f"{i:05d}.jpg", (640 + 64 * i, 480))
    if records is None:
        records = [mme_record(i, f"remote_sensing/{i:05d}.jpg") for i in range(n)]
    path = root / "MME_RealWorld.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


HR_HEADER = ["index", "question", "A", "B", "C", "D", "answer", "category", "cycle_category", "image"]


def hr_row(index, image_b64, question=None, answer="B", options=("Red", "Blue", "Green", "Black"), category="FSP"):
    return [str(index), question or f"What is the color of object {index}?", *options, answer, category,
            f"cycle_{index % 4}", image_b64]


def write_hr_tsv(path: Path, rows, header=HR_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as file:
        # pandas' to_csv(sep="\t") quotes minimally, like this writer.
        writer = csv.writer(file, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_hr(root: Path) -> Path:
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
# shared pieces


class TestBase:
    def test_split_question_and_options(self):
        text = "What is it?\nSecond line.\n(A) a cat\n(B) a dog\nAnswer with the option's letter from the given choices directly."
        assert split_question_and_options(text) == ("What is it?\nSecond line.", ("a cat", "a dog"))
        assert split_question_and_options("Plain question?") == ("Plain question?", ())
        assert split_question_and_options("Q? The choices are listed below:\n(A) x\n(B) y") == ("Q?", ("x", "y"))
        # letters must run A, B, C: a stray "(D)" ends the options
        assert split_question_and_options("Q\n(A) x\n(B) y\n(D) z") == ("Q", ("x", "y"))

    def test_strip_option_prefix(self):
        assert strip_option_prefix("(A) red", 0) == "red"
        assert strip_option_prefix("no prefix", 3) == "no prefix"
        with pytest.raises(DataError, match=r"labelled \(C\), expected \(B\)"):
            strip_option_prefix("(C) x", 1)

    def test_parse_boxes(self):
        assert parse_boxes([[1, 2, 3, 4]]) == ((1.0, 2.0, 3.0, 4.0),)
        assert parse_boxes([1, 2, 3, 4], "xywh") == ((1.0, 2.0, 4.0, 6.0),)
        assert parse_boxes(None) == () and parse_boxes([]) == ()
        with pytest.raises(DataError, match="not 4 numbers"):
            parse_boxes([[1, 2, 3]])

    def test_shuffle_is_deterministic_and_moves_the_answer(self):
        choices = ("right", "w1", "w2", "w3")
        a = shuffle_choices(choices, "A", seed=3, key="x")
        assert a == shuffle_choices(choices, "A", seed=3, key="x")
        new_choices, letter = a
        assert sorted(new_choices) == sorted(choices)
        assert new_choices["ABCD".index(letter)] == "right"

    def test_loaded_dataset_sequence_and_index(self):
        samples = [Sample(f"s{i}", b"", "Q?", "A", ("x", "y")) for i in range(3)]
        data = LoadedDataset(samples, source="mem")
        assert len(data) == 3 and data[-1].sample_id == "s2" and [s.sample_id for s in data[0:2]] == ["s0", "s1"]
        assert data.index_of("s1") == 1
        with pytest.raises(KeyError, match="no sample with id 'zz'"):
            data.index_of("zz")
        with pytest.raises(IndexError):
            data[3]
        with pytest.raises(DataError, match="appears twice"):
            LoadedDataset(samples + [samples[0]], source="mem")

    def test_lazy_dataset_builds_on_access(self):
        built = []

        def build(i):
            built.append(i)
            return Sample(f"s{i}", b"", "Q?", "free text")

        data = LoadedDataset.lazy([f"s{i}" for i in range(5)], build, source="lazy")
        assert data.index_of("s4") == 4 and built == []
        assert data[4].sample_id == "s4" and built == [4]

    def test_collector_duplicate_ids_and_empty(self):
        collector = RowCollector("f.jsonl", on_error="skip")
        collector.add("line 1", lambda: Sample("a", b"", "Q?", "x"))
        collector.add("line 2", lambda: Sample("a", b"", "Q?", "y"))
        with pytest.warns(DataWarning, match="skipped 1 of 2 rows"):
            data = collector.finish()
        assert data.skipped == [("line 2", "sample id 'a' was already used by line 1")]
        empty = RowCollector("g.jsonl", on_error="skip")
        empty.add("line 1", lambda: Sample("b", b"", "Q?", ""))
        with pytest.raises(EmptyDatasetError, match="no usable samples") as info:
            empty.finish()
        assert info.value.skipped[0][0] == "line 1"

    def test_on_error_is_checked(self, tmp_path):
        with pytest.raises(ValueError, match="on_error must be"):
            load_jsonl(write_jsonl(tmp_path / "x.jsonl", []), on_error="ignore")

    def test_file_image_names_file_and_row(self, tmp_path):
        image = FileImage(tmp_path / "missing.jpg", "data.jsonl, line 7")
        with pytest.raises(ImageLoadError, match=r"missing\.jpg.*data\.jsonl, line 7.*does not exist"):
            decode_image(image)


# ---------------------------------------------------------------------------
# V* Bench


class TestVStar:
    def test_questions_file(self, tmp_path):
        data = load_vstar(make_vstar(tmp_path / "vstar"))
        assert len(data) == 3
        s = data[data.index_of("direct_attributes/sa_1")]
        assert s.question == "What is the color of the cup?"
        assert s.choices == ("blue", "red", "green", "black")  # the benchmark's order
        assert s.answer == "B" and s.answer_text == "red"
        assert s.target_boxes == ((100.0, 120.0, 150.0, 160.0),)
        assert s.category == "direct_attributes"
        assert s.metadata["target_object"] == ["cup"] and s.metadata["question_id"] == 0
        assert decode_image(s.image).size == (640, 480)
        rel = data[data.index_of("relative_position/sa_3")]
        assert rel.choices == ("right", "left") and rel.answer_text == "left"
        assert rel.target_boxes == ((10.0, 20.0, 40.0, 60.0), (500.0, 400.0, 600.0, 450.0))
        assert rel.target_box == (10.0, 20.0, 600.0, 450.0)
        assert image_size(rel.image) == (1024, 768)
        assert data[data.index_of("direct_attributes/sa_2")].answer_text == "leather"

    def test_rectangle_is_inside_the_box(self, tmp_path):
        data = load_vstar(make_vstar(tmp_path / "vstar"))
        s = data[data.index_of("direct_attributes/sa_1")]
        pixels = np.asarray(decode_image(s.image))
        x1, y1, x2, y2 = (int(v) for v in s.target_box)
        assert pixels[(y1 + y2) // 2, (x1 + x2) // 2, 0] > 180  # the red rectangle
        assert pixels[5, 5, 0] < 215 and pixels[5, 5, 1] > 180  # grey background

    def test_fallback_keeps_correct_answer_first(self, tmp_path):
        data = load_vstar(make_vstar(tmp_path / "vstar", with_questions=False))
        assert len(data) == 3
        for s in data:
            assert s.answer == "A"
        s = data[data.index_of("direct_attributes/sa_2")]
        assert s.choices == ("leather", "rubber", "cotton", "plastic")
        assert s.question == "What is the material of the glove?"
        assert s.target_boxes == ((300.0, 200.0, 360.0, 280.0),)

    def test_fallback_shuffle_is_deterministic(self, tmp_path):
        root = make_vstar(tmp_path / "vstar", with_questions=False)
        a = load_vstar(root, shuffle_choices_seed=7)
        b = load_vstar(root, shuffle_choices_seed=7)
        assert [(s.choices, s.answer) for s in a] == [(s.choices, s.answer) for s in b]
        for s in a:
            assert s.answer_text == {"sa_1": "red", "sa_2": "leather", "sa_3": "left"}[s.sample_id.split("/")[1]]
        many = [load_vstar(root, shuffle_choices_seed=seed)[0].answer for seed in range(12)]
        assert len(set(many)) > 1  # the correct answer is no longer always "A"

    def test_bare_file_names_in_questions_file(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        self._rewrite_questions(root, lambda rows: [r.update(image=r["image"].split("/")[1]) for r in rows])
        data = load_vstar(root)
        assert data.sample_ids == ["direct_attributes/sa_1", "direct_attributes/sa_2", "relative_position/sa_3"]
        assert image_size(data[2].image) == (1024, 768) and data[2].target_boxes

    def test_use_questions_file_false(self, tmp_path):
        data = load_vstar(make_vstar(tmp_path / "vstar"), use_questions_file=False)
        assert {s.answer for s in data} == {"A"}

    def test_not_a_vstar_folder(self, tmp_path):
        with pytest.raises(DataError, match="does not exist"):
            load_vstar(tmp_path / "nope")
        (tmp_path / "empty").mkdir()
        with pytest.raises(DataError, match="not a V\\* Bench folder"):
            load_vstar(tmp_path / "empty")

    def _rewrite_questions(self, root: Path, edit):
        path = root / "test_questions.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        edit(rows)
        write_jsonl(path, rows)
        return path

    @pytest.mark.parametrize(
        "edit, message",
        [
            (lambda rows: rows[1].update(image="direct_attributes/sa_9.jpg"), r"sa_9\.jpg' does not exist"),
            (lambda rows: rows[1].update(image="../outside.jpg"), r"points outside the dataset root"),
            (lambda rows: rows[1].update(image="/etc/passwd"), r"is absolute"),
            (lambda rows: rows[1].pop("label"), r"the answer is empty"),
            (lambda rows: rows[1].update(label="E"), r"answer 'E' is not one of the option letters A, B, C, D"),
            (lambda rows: rows[1].update(text="What? no options here"), r"no lettered option lines"),
        ],
    )
    def test_bad_rows_raise_with_file_and_line(self, tmp_path, edit, message):
        root = make_vstar(tmp_path / "vstar")
        (tmp_path / "outside.jpg").write_bytes(jpeg_bytes())
        self._rewrite_questions(root, edit)
        with pytest.raises(DataError, match=message) as info:
            load_vstar(root)
        assert "test_questions.jsonl, line 2 (question_id 1)" in str(info.value)

    def test_bad_rows_skip(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        self._rewrite_questions(root, lambda rows: (rows[0].update(label="Z"), rows[2].update(image="x/../../y.jpg")))
        with open(root / "test_questions.jsonl", "a") as f:
            f.write("{not json\n")
        with pytest.warns(DataWarning, match=r"skipped 3 of 4 rows .*\.skipped"):
            data = load_vstar(root, on_error="skip")
        assert len(data) == 1 and data[0].sample_id == "direct_attributes/sa_2"
        assert [w.split(", ")[-1] for w, _ in data.skipped] == ["line 1 (question_id 0)", "line 3 (question_id 2)", "line 4"]
        assert "not valid JSON" in data.skipped[2][1]

    def test_symlink_out_of_root_is_refused(self, tmp_path):
        root = make_vstar(tmp_path / "vstar", with_questions=False)
        secret = write_jpeg(tmp_path / "secret.jpg")
        (root / "direct_attributes" / "sa_1.jpg").unlink()
        os.symlink(secret, root / "direct_attributes" / "sa_1.jpg")
        with pytest.raises(DataError, match=r"sa_1\.json: .*points outside the dataset root"):
            load_vstar(root)
        # a symlink that stays inside the dataset is fine
        (root / "direct_attributes" / "sa_1.jpg").unlink()
        os.symlink(root / "direct_attributes" / "sa_2.jpg", root / "direct_attributes" / "sa_1.jpg")
        assert len(load_vstar(root)) == 3

    def test_fallback_missing_image_and_orphan_image(self, tmp_path):
        root = make_vstar(tmp_path / "vstar", with_questions=False)
        (root / "direct_attributes" / "sa_1.jpg").unlink()
        write_jpeg(root / "relative_position" / "sa_77.jpg")
        with pytest.raises(DataError, match=r"sa_1\.json: no image sa_1\.jpg"):
            load_vstar(root)
        with pytest.warns(DataWarning):
            data = load_vstar(root, on_error="skip")
        assert len(data) == 2
        reasons = dict(data.skipped)
        assert any("sa_77.jpg" in w and "has no sa_77.json annotation" in r for w, r in reasons.items())

    def test_truncated_jpeg_error_names_file_and_row(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        write_truncated_jpeg(root / "direct_attributes" / "sa_2.jpg", (800, 600))
        data = load_vstar(root)  # loading reads no pixels
        s = data[data.index_of("direct_attributes/sa_2")]
        assert image_size(s.image) == (800, 600)  # the header is intact
        with pytest.raises(ImageLoadError) as info:
            decode_image(s.image, context="sample 'direct_attributes/sa_2': ")
        message = str(info.value)
        assert "sa_2.jpg" in message and "test_questions.jsonl, line 2" in message and "truncated" in message

    def test_through_resolve_dataset(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        data = resolve_dataset(f"vstar:{root}", shuffle_choices_seed=None)
        assert isinstance(data, LoadedDataset) and len(data) == 3


# ---------------------------------------------------------------------------
# MME-RealWorld


class TestMMERealWorld:
    def test_records(self, tmp_path):
        data = load_mme_realworld(make_mme(tmp_path / "mme"))
        assert len(data) == 3
        s = data[data.index_of("perception/remote_sensing/color/0001")]
        assert s.question == "What color is the roof of building 1?"
        assert s.choices == ("red", "blue", "green", "white", "The image does not feature the roof.")
        assert s.answer == "B" and s.answer_text == "blue"
        assert s.category == "Remote Sensing/color"
        assert s.metadata["task"] == "Perception" and s.metadata["subtask"] == "Remote Sensing"
        assert s.metadata["category"] == "color" and s.metadata["question_type"] == "Multiple Choice"
        assert s.target_boxes == ()
        assert decode_image(s.image).size == (704, 480)

    def test_category_from(self, tmp_path):
        path = make_mme(tmp_path / "mme")
        assert load_mme_realworld(path, category_from="category")[0].category == "color"
        assert load_mme_realworld(path, category_from="task/subtask")[0].category == "Perception/Remote Sensing"
        with pytest.raises(ValueError, match="category_from"):
            load_mme_realworld(path, category_from="nope")

    def test_options_inside_text_are_cut(self, tmp_path):
        text = "How many cars are there?\nThe choices are listed below:\n(A) 1\n(B) 2\n(C) 3\n(D) 4\n(E) 5\nSelect the best answer."
        path = make_mme(tmp_path / "mme", records=[mme_record(0, "remote_sensing/00000.jpg", Text=text)], n=1)
        s = load_mme_realworld(path)[0]
        assert s.question == "How many cars are there?" and s.metadata["options_in_text"] is True

    def test_image_root(self, tmp_path):
        path = make_mme(tmp_path / "mme")
        moved = tmp_path / "elsewhere" / "q.json"
        moved.parent.mkdir()
        path.rename(moved)
        with pytest.raises(DataError, match="does not exist"):
            load_mme_realworld(moved)
        assert len(load_mme_realworld(moved, image_root=tmp_path / "mme")) == 3
        assert len(resolve_dataset(f"mme-realworld:{moved}", image_root=str(tmp_path / "mme"))) == 3

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"Ground truth": ""}, r"the answer is empty"),
            ({"Ground truth": None}, r"the answer is empty"),
            ({"Ground truth": "F"}, r"answer 'F' is not one of the option letters A, B, C, D, E"),
            ({"Image": "remote_sensing/nope.jpg"}, r"nope\.jpg' does not exist"),
            ({"Image": "../../x.jpg"}, r"points outside the dataset root"),
            ({"Image": "/abs/x.jpg"}, r"is absolute"),
            ({"Answer choices": ["(A) x", "(C) y"]}, r"labelled \(C\), expected \(B\)"),
            ({"Answer choices": []}, r"'Answer choices' must be a non-empty list"),
        ],
    )
    def test_bad_records(self, tmp_path, overrides, message):
        records = [mme_record(i, f"remote_sensing/{i:05d}.jpg") for i in range(3)]
        records[2].update(overrides)
        path = make_mme(tmp_path / "mme", records=records)
        with pytest.raises(DataError, match=message) as info:
            load_mme_realworld(path)
        assert "MME_RealWorld.json, record 2 (Question_id 'perception/remote_sensing/color/0002')" in str(info.value)
        with pytest.warns(DataWarning, match="skipped 1 of 3 rows"):
            data = load_mme_realworld(path, on_error="skip")
        assert len(data) == 2 and len(data.skipped) == 1

    def test_missing_field_and_bad_file(self, tmp_path):
        records = [mme_record(0, "remote_sensing/00000.jpg"), {"Question_id": "q2", "Image": "remote_sensing/00001.jpg"}]
        path = make_mme(tmp_path / "mme", records=records, n=2)
        with pytest.raises(DataError, match=r"record 1 \(Question_id 'q2'\): missing field 'Text'"):
            load_mme_realworld(path)
        path.write_text("{not json")
        with pytest.raises(DataError, match="not readable JSON"):
            load_mme_realworld(path)
        path.write_text("{}")
        with pytest.raises(DataError, match="must hold a JSON list"):
            load_mme_realworld(path)

    def test_truncated_image(self, tmp_path):
        path = make_mme(tmp_path / "mme")
        write_truncated_jpeg(tmp_path / "mme" / "remote_sensing" / "00001.jpg")
        s = load_mme_realworld(path)[1]
        with pytest.raises(ImageLoadError, match=r"00001\.jpg.*record 1.*truncated"):
            decode_image(s.image)


# ---------------------------------------------------------------------------
# HR-Bench


class TestHRBench:
    def test_rows(self, tmp_path):
        data = load_hr_bench(make_hr(tmp_path))
        assert len(data) == 4
        s0 = data[data.index_of("0")]
        assert s0.question == "What is the color of object 0?"
        assert s0.choices == ("Red", "Blue", "Green", "Black") and s0.answer == "B"
        assert s0.category == "FSP" and s0.metadata["cycle_category"] == "cycle_0"
        assert decode_image(s0.image).size == (640, 480)
        assert data[1].answer_text == "Black" and data[1].category == "FCP"
        assert image_size(data[1].image) == (800, 600)
        quoted = data[data.index_of("2")]
        assert quoted.question == 'Read the "EXIT"\tsign:\nwhat does it say?'
        assert decode_image(quoted.image).size == (700, 500)
        shared = data[data.index_of("3")]
        assert shared.metadata["image_shared_with"] == "0" and image_size(shared.image) == (640, 480)

    def test_big_cell_needs_the_field_size_limit(self, tmp_path):
        path = make_hr(tmp_path)
        text = path.read_text()
        assert max(len(cell) for line in text.splitlines() for cell in line.split("\t")) > 131_072
        assert '"' in text.splitlines()[3]  # row 2 goes through the csv module

    @pytest.mark.parametrize("chunk_bytes", [1, 7, 100, 4096])
    def test_record_boundaries_do_not_depend_on_chunk_size(self, tmp_path, chunk_bytes):
        path = make_hr(tmp_path)
        with open(path, "rb") as f:
            expected = list(hr_bench._iter_records(f))
        with open(path, "rb") as f:
            got = list(hr_bench._iter_records(f, chunk_bytes=chunk_bytes))
        assert got == expected
        assert [r.line for r in got] == [1, 2, 3, 4, 6]  # row 2's question holds a line break
        raw = path.read_bytes()
        for record in got:  # offsets and lengths cover the file exactly
            assert raw[record.offset + record.length - 1: record.offset + record.length] == b"\n"
        assert got[-1].offset + got[-1].length == len(raw)

    def test_crlf_and_no_final_newline(self, tmp_path):
        image = b64(jpeg_bytes((320, 200)))
        text = "\t".join(HR_HEADER) + "\r\n" + "\t".join(hr_row(0, image)) + "\r\n\r\n" + "\t".join(hr_row(1, image, answer="C"))
        path = tmp_path / "crlf.tsv"
        path.write_bytes(text.encode())
        data = load_hr_bench(path)
        assert [s.answer for s in data] == ["B", "C"] and data[0].metadata["cycle_category"] == "cycle_0"
        assert decode_image(data[0].image).size == (320, 200) and decode_image(data[1].image).size == (320, 200)

    def test_no_image_is_decoded_at_load_time(self, tmp_path, monkeypatch):
        path = make_hr(tmp_path)
        calls = {"b64": 0, "open": 0}
        real_decode, real_open = hr_bench._decode_image_field, Image.open

        def counting_decode(cell):
            calls["b64"] += 1
            return real_decode(cell)

        def counting_open(*args, **kwargs):
            calls["open"] += 1
            return real_open(*args, **kwargs)

        monkeypatch.setattr(hr_bench, "_decode_image_field", counting_decode)
        monkeypatch.setattr(Image, "open", counting_open)
        data = load_hr_bench(path)
        assert calls == {"b64": 0, "open": 0}
        data[1].image()
        assert calls == {"b64": 1, "open": 1}

    def test_memory_does_not_hold_the_images(self, tmp_path):
        image = b64(jpeg_bytes((1200, 900), noise=True, quality=95))
        assert len(image) > 1_000_000
        path = write_hr_tsv(tmp_path / "big.tsv", [hr_row(i, image) for i in range(24)])
        assert path.stat().st_size > 24_000_000
        tracemalloc.start()
        try:
            data = load_hr_bench(path)
            _, peak = tracemalloc.get_traced_memory()
            current, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(data) == 24
        # about one row plus one read chunk, whatever the file's size
        assert peak < 4 * len(image), f"peak {peak:,} bytes while loading a {path.stat().st_size:,}-byte file"
        assert current < 1_000_000, f"{current:,} bytes held after loading"

    @pytest.mark.parametrize(
        "row, message",
        [
            (hr_row(1, "IMG", answer=""), r"the answer is empty"),
            (hr_row(1, "IMG", answer="E"), r"answer 'E' is not one of the option letters A, B, C, D"),
            (hr_row(1, "IMG", options=("a", "", "c", "d")), r"option B is empty"),
            (hr_row(1, "@@@@" * 40), r"the image column is not base64"),
            (hr_row(1, "42"), r"names no row with an image"),
            (hr_row(1, "IMG")[:-2] + ["IMG"], r"has 9 tab-separated cells, the header has 10"),
        ],
    )
    def test_bad_rows(self, tmp_path, row, message):
        image = b64(jpeg_bytes())
        row = [image if cell == "IMG" else cell for cell in row]
        path = write_hr_tsv(tmp_path / "hr.tsv", [hr_row(0, image), row, hr_row(2, image)])
        with pytest.raises(DataError, match=message) as info:
            load_hr_bench(path)
        assert "hr.tsv, line 3" in str(info.value)
        with pytest.warns(DataWarning, match="skipped 1 of 3 rows"):
            data = load_hr_bench(path, on_error="skip")
        assert [s.sample_id for s in data] == ["0", "2"]

    def test_truncated_image_error_names_row(self, tmp_path):
        data = jpeg_bytes(noise=True)
        path = write_hr_tsv(tmp_path / "hr.tsv", [hr_row(7, b64(data[: len(data) // 3]))])
        s = load_hr_bench(path)[0]
        with pytest.raises(ImageLoadError, match=r"hr\.tsv, line 2 \(index 7\).*truncated"):
            decode_image(s.image)

    def test_header_problems(self, tmp_path):
        path = write_hr_tsv(tmp_path / "hr.tsv", [], header=["index", "question", "A", "B"])
        with pytest.raises(DataError, match="lacks column"):
            load_hr_bench(path)
        (tmp_path / "empty.tsv").write_text("")
        with pytest.raises(DataError, match="is empty"):
            load_hr_bench(tmp_path / "empty.tsv")

    def test_changed_file_is_detected(self, tmp_path):
        path = make_hr(tmp_path)
        data = load_hr_bench(path)
        write_hr_tsv(path, [hr_row(5, b64(jpeg_bytes()))])
        with pytest.raises(ImageLoadError, match="changed since loading"):
            decode_image(data[1].image)

    def test_pickles(self, tmp_path):
        import pickle

        data = load_hr_bench(make_hr(tmp_path))
        copy = pickle.loads(pickle.dumps(data))
        assert decode_image(copy[1].image).size == (800, 600)


# ---------------------------------------------------------------------------
# JSONL


class TestJSONL:
    def make(self, tmp_path, rows):
        write_jpeg(tmp_path / "images" / "a.jpg", (640, 480))
        write_jpeg(tmp_path / "images" / "b.jpg", (320, 240))
        return write_jsonl(tmp_path / "train.jsonl", rows)

    def test_rows(self, tmp_path):
        path = self.make(tmp_path, [
            {"id": "q1", "image": "images/a.jpg", "question": "What is written on the sign?", "answer": "STOP"},
            "",
            {"image": "images/b.jpg", "question": "What color is the car?", "choices": ["red", "blue"], "answer": "b",
             "boxes": [[10, 20, 110, 120]], "category": "color", "source_url": "http://x", "metadata": {"split": "train"}},
            {"image": "images/a.jpg", "question": "Where?", "answer": "A", "choices": ["here", "there"], "bbox_xywh": [5, 6, 10, 20]},
        ])
        data = load_jsonl(path)
        assert [s.sample_id for s in data] == ["q1", "train:3", "train:4"]
        free = data[0]
        assert free.choices == () and free.answer == "STOP" and free.category is None
        assert decode_image(free.image).size == (640, 480)
        mc = data[1]
        assert mc.answer == "B" and mc.answer_text == "blue" and mc.category == "color"
        assert mc.target_boxes == ((10.0, 20.0, 110.0, 120.0),)
        assert mc.metadata["source_url"] == "http://x" and mc.metadata["split"] == "train"
        assert image_size(mc.image) == (320, 240)
        assert data[2].target_boxes == ((5.0, 6.0, 15.0, 26.0),)

    @pytest.mark.parametrize(
        "row, message",
        [
            ({"image": "images/a.jpg", "question": "Q?"}, r"the answer is missing"),
            ({"image": "images/a.jpg", "question": "Q?", "answer": ""}, r"answer is empty"),
            ({"image": "images/a.jpg", "question": "Q?", "answer": "C", "choices": ["x", "y"]}, r"answer 'C' is not one of the option letters A, B"),
            ({"image": "images/zz.jpg", "question": "Q?", "answer": "x"}, r"zz\.jpg' does not exist"),
            ({"image": "../a.jpg", "question": "Q?", "answer": "x"}, r"points outside the dataset root"),
            ({"image": "/tmp/a.jpg", "question": "Q?", "answer": "x"}, r"is absolute"),
            ({"question": "Q?", "answer": "x"}, r"missing field 'image'"),
            ({"image": "images/a.jpg", "question": "", "answer": "x"}, r"question is empty"),
            ({"image": "images/a.jpg", "question": "Q?", "answer": "x", "boxes": [[5, 5, 1, 1]]}, r"target box .* is empty"),
            ({"image": "images/a.jpg", "question": "Q?", "answer": "x", "boxes": [], "bbox_xywh": []}, r"not both"),
            ("[1, 2]", r"must hold a JSON object"),
            ("{broken", r"not valid JSON"),
        ],
    )
    def test_bad_rows(self, tmp_path, row, message):
        good = {"image": "images/a.jpg", "question": "Q?", "answer": "x"}
        path = self.make(tmp_path, [good, row, good])
        with pytest.raises(DataError, match=message) as info:
            load_jsonl(path)
        assert "train.jsonl, line 2" in str(info.value)
        with pytest.warns(DataWarning, match="skipped 1 of 3 rows"):
            data = load_jsonl(path, on_error="skip")
        assert [s.sample_id for s in data] == ["train:1", "train:3"]
        assert data.skipped[0][0].endswith("train.jsonl, line 2")

    def test_symlink_escape(self, tmp_path):
        outside = write_jpeg(tmp_path / "outside" / "x.jpg")
        path = self.make(tmp_path / "data", [{"image": "images/link.jpg", "question": "Q?", "answer": "x"}])
        os.symlink(outside, tmp_path / "data" / "images" / "link.jpg")
        with pytest.raises(DataError, match=r"line 1: image path 'images/link\.jpg' points outside the dataset root"):
            load_jsonl(path)

    def test_duplicate_id(self, tmp_path):
        row = {"id": "same", "image": "images/a.jpg", "question": "Q?", "answer": "x"}
        path = self.make(tmp_path, [row, row])
        with pytest.raises(DataError, match=r"line 2 \(id 'same'\): sample id 'same' was already used by .*line 1"):
            load_jsonl(path)

    def test_all_rows_bad(self, tmp_path):
        path = self.make(tmp_path, [{"image": "images/a.jpg", "question": "Q?"}])
        with pytest.raises(EmptyDatasetError, match="no usable samples; all 1 rows were bad"):
            load_jsonl(path, on_error="skip")

    def test_missing_file(self, tmp_path):
        with pytest.raises(DataError, match="does not exist"):
            load_jsonl(tmp_path / "none.jsonl")


# ---------------------------------------------------------------------------
# Hugging Face


datasets = pytest.importorskip("datasets")


def hf_table(n=3):
    return {
        "image": [Image.open(io.BytesIO(jpeg_bytes((320 + 32 * i, 240)))) for i in range(n)],
        "question": [f"Question {i}?" for i in range(n)],
        "choices": [["cat", "dog", "bird"] for _ in range(n)],
        "answer": ["B", "C", "cat"][:n],
        "category": ["animals"] * n,
        "boxes": [[[1, 2, 30, 40]], [], [[5, 5, 50, 60], [70, 70, 90, 95]]][:n],
        "difficulty": ["easy", "hard", "easy"][:n],
    }


class TestHuggingFace:
    def test_dataset_object(self):
        ds = datasets.Dataset.from_dict(hf_table())
        data = load_hf_dataset(ds)
        assert [s.answer for s in data] == ["B", "C", "A"]
        assert data[0].target_boxes == ((1.0, 2.0, 30.0, 40.0),) and data[1].target_boxes == ()
        assert data[2].target_box == (5.0, 5.0, 90.0, 95.0)
        assert data[0].category == "animals" and data[0].metadata["difficulty"] == "easy"
        assert data[0].sample_id == "0" and data.index_of("2") == 2
        assert decode_image(data[1].image).size == (352, 240)

    def test_int_answers(self):
        ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (64, 48))] * 2, "question": ["Q?", "Q?"],
                                         "choices": [["a", "b"], ["a", "b"]], "answer": [1, 0]})
        assert [s.answer for s in load_hf_dataset(ds)] == ["B", "A"]

    def test_save_to_disk_and_spec(self, tmp_path):
        table = hf_table()
        table["answer"] = ["B", "C", "A"]
        table["id"] = ["x1", "x2", "x3"]
        datasets.Dataset.from_dict(table).save_to_disk(str(tmp_path / "hf"))
        data = resolve_dataset(f"hf:{tmp_path / 'hf'}")
        assert [s.sample_id for s in data] == ["x1", "x2", "x3"]
        assert image_size(data[2].image) == (384, 240)
        dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(table), "test": datasets.Dataset.from_dict(table)})
        with pytest.raises(DataError, match="choose one with split"):
            load_hf_dataset(dd)
        assert len(load_hf_dataset(dd, split="test")) == 3

    def test_images_are_not_decoded_at_load_time(self, monkeypatch):
        ds = datasets.Dataset.from_dict(hf_table())
        calls = []
        real_open = Image.open
        monkeypatch.setattr(Image, "open", lambda *a, **k: calls.append(1) or real_open(*a, **k))
        data = load_hf_dataset(ds)
        assert calls == []
        data[0].image()
        assert len(calls) == 1

    def test_path_column_and_renamed_columns(self, tmp_path):
        root = tmp_path / "hfp"
        write_jpeg(root / "imgs" / "a.jpg", (640, 480))
        ds = datasets.Dataset.from_dict({"file": ["imgs/a.jpg", "../escape.jpg", "imgs/none.jpg"], "q": ["Q?"] * 3, "a": ["yes"] * 3})
        ds.save_to_disk(str(root))
        with pytest.raises(DataError, match=r"row 1: image path '\.\./escape\.jpg' points outside"):
            load_hf_dataset(str(root), image_column="file", question_column="q", answer_column="a")
        with pytest.warns(DataWarning, match="skipped 2 of 3"):
            data = load_hf_dataset(str(root), image_column="file", question_column="q", answer_column="a", on_error="skip")
        assert len(data) == 1 and data[0].choices == () and decode_image(data[0].image).size == (640, 480)
        assert "does not exist" in data.skipped[1][1]
        with pytest.raises(DataError, match="has no column 'opts'"):
            load_hf_dataset(str(root), image_column="file", question_column="q", answer_column="a", choices_column="opts")

    def test_bad_answers(self):
        table = hf_table()
        table["answer"] = ["B", "Z", "fish"]
        ds = datasets.Dataset.from_dict(table)
        with pytest.raises(DataError, match=r"row 1: answer 'Z' is not one of the option letters"):
            load_hf_dataset(ds)
        with pytest.warns(DataWarning, match="skipped 2 of 3"):
            data = load_hf_dataset(ds, on_error="skip")
        assert "neither an option letter nor one of the choices" in data.skipped[1][1]

    def test_missing_required_column(self):
        ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "question": ["Q?"]})
        with pytest.raises(DataError, match="no column 'answer'"):
            load_hf_dataset(ds)


# ---------------------------------------------------------------------------
# mgpo data


def run_data(*argv):
    parser = argparse.ArgumentParser()
    data_check.add_arguments(parser)
    return data_check.run(parser.parse_args(list(argv)))


class TestDataCheck:
    def test_clean_dataset(self, tmp_path, capsys):
        root = make_vstar(tmp_path / "vstar")
        assert run_data(f"vstar:{root}", "--check-images") == 0
        out = capsys.readouterr().out
        assert "samples:     3" in out
        assert "direct_attributes 2, relative_position 1" in out
        assert "4 options 2, 2 options 1" in out
        assert "with boxes:  3 of 3" in out
        assert "width 640 / 800 / 1024, height 480 / 600 / 768" in out
        assert "smallest 640x480, largest 1024x768" in out
        assert "bad rows:    0" in out

    def test_bad_rows_reported(self, tmp_path, capsys):
        root = make_vstar(tmp_path / "vstar")
        write_truncated_jpeg(root / "direct_attributes" / "sa_2.jpg", (800, 600))
        path = root / "test_questions.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[2]["label"] = "Q"
        write_jsonl(path, rows)
        # the header pass cannot see the truncation
        assert run_data(f"vstar:{root}", "--check-images") == 1
        out = capsys.readouterr().out
        assert "bad rows:    1" in out and "line 3 (question_id 2): answer 'Q' is not one of the option letters A, B" in out
        assert run_data(f"vstar:{root}", "--decode", "--json") == 1
        summary = json.loads(capsys.readouterr().out)
        assert summary["count"] == 2 and summary["bad_rows"] == 2
        assert summary["images"]["mode"] == "decode" and summary["images"]["checked"] == 1
        assert "truncated" in summary["bad"][1]["reason"] and "sa_2.jpg" in summary["bad"][1]["reason"]

    def test_box_outside_image_and_no_image_check(self, tmp_path, capsys):
        write_jpeg(tmp_path / "a.jpg", (100, 100))
        path = write_jsonl(tmp_path / "d.jsonl", [{"image": "a.jpg", "question": "Q?", "answer": "x", "boxes": [[10, 10, 150, 50]]}])
        assert run_data(f"jsonl:{path}") == 0
        assert "images:      not read" in capsys.readouterr().out
        assert run_data(f"jsonl:{path}", "--check-images") == 1
        assert "lies outside the 100x100 image" in capsys.readouterr().out

    def test_options_and_load_failures(self, tmp_path, capsys):
        path = make_mme(tmp_path / "mme")
        moved = tmp_path / "q.json"
        path.rename(moved)
        assert run_data(f"mme-realworld:{moved}", "-o", f"image_root={tmp_path / 'mme'}", "--json") == 0
        assert json.loads(capsys.readouterr().out)["categories"] == {"Remote Sensing/color": 3}
        assert run_data(f"mme-realworld:{moved}") == 1  # every image is missing
        out = capsys.readouterr().out
        assert "no usable samples" in out and "bad rows:    3" in out
        assert run_data(f"jsonl:{tmp_path / 'nothing.jsonl'}") == 1
        assert "does not exist" in capsys.readouterr().out
        assert run_data("nope:x") == 1
        assert "unknown dataset spec" in capsys.readouterr().out

    def test_max_bad(self, tmp_path, capsys):
        write_jpeg(tmp_path / "a.jpg")
        rows = [{"image": "a.jpg", "question": "Q?", "answer": "x"}] + [{"image": f"m{i}.jpg", "question": "Q?", "answer": "x"} for i in range(30)]
        path = write_jsonl(tmp_path / "d.jsonl", rows)
        assert run_data(f"jsonl:{path}") == 1
        out = capsys.readouterr().out
        assert "bad rows:    30" in out and out.count("does not exist") == 20 and "... and 10 more" in out

    def test_hr_bench_headers(self, tmp_path, capsys):
        assert run_data(f"hr-bench:{make_hr(tmp_path)}", "--check-images") == 0
        assert "4 headers read" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# end to end through the environment


class TestThroughEnvironment:
    """``gym.make("mgpo/HighResVQA-v0", dataset=SPEC)`` with each loader."""

    def _episode(self, spec, sample_id, size, box, **kwargs):
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

    def test_vstar(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        env, obs, info = self._episode(f"vstar:{root}", "relative_position/sa_3", (1024, 768), (10.0, 20.0, 600.0, 450.0))
        assert info["category"] == "relative_position"
        assert "(A) right" not in obs["history"][-1]["content"]  # the first turn asks for a region only
        env.close()

    def test_vstar_with_options_and_answer(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        env, obs, info = self._episode(f"vstar:{root}", "direct_attributes/sa_1", (640, 480), (100.0, 120.0, 150.0, 160.0),
                                       dataset_kwargs={"shuffle_choices_seed": None})
        obs, reward, terminated, truncated, info = env.step("[0, 0, 300, 300]")
        assert not terminated and "red" in obs["history"][-1]["content"]
        obs, reward, terminated, truncated, info = env.step("\\boxed{B}")
        assert terminated and reward == 1.0
        env.close()

    def test_mme_realworld(self, tmp_path):
        env, _, _ = self._episode(f"mme-realworld:{make_mme(tmp_path / 'mme')}", "perception/remote_sensing/color/0002", (768, 480), None)
        env.close()

    def test_hr_bench(self, tmp_path):
        env, _, info = self._episode(f"hr-bench:{make_hr(tmp_path)}", "1", (800, 600), None)
        assert info["category"] == "FCP"
        env.close()

    def test_jsonl(self, tmp_path):
        write_jpeg(tmp_path / "a.jpg", (900, 700))
        path = write_jsonl(tmp_path / "d.jsonl", [{"id": "one", "image": "a.jpg", "question": "Q?", "choices": ["x", "y"], "answer": "A", "boxes": [[1, 2, 300, 400]]}])
        env, _, _ = self._episode(f"jsonl:{path}", "one", (900, 700), (1.0, 2.0, 300.0, 400.0))
        env.close()

    def test_hf_dataset_object(self):
        ds = datasets.Dataset.from_dict(hf_table())
        env, _, _ = self._episode(ds, "2", (384, 240), (5.0, 5.0, 90.0, 95.0))
        env.close()

    def test_truncated_image_error_at_reset(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        write_truncated_jpeg(root / "direct_attributes" / "sa_2.jpg", (800, 600))
        env = gym.make("mgpo/HighResVQA-v0", dataset=f"vstar:{root}")
        with pytest.raises(ImageLoadError) as info:
            env.reset(options={"sample_id": "direct_attributes/sa_2"})
        assert "sa_2.jpg" in str(info.value) and "test_questions.jsonl, line 2" in str(info.value)
        env.close()

    def test_skip_through_dataset_kwargs(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        (root / "direct_attributes" / "sa_1.jpg").unlink()
        with pytest.raises(DataError, match="sa_1.jpg' does not exist"):
            gym.make("mgpo/HighResVQA-v0", dataset=f"vstar:{root}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env = gym.make("mgpo/HighResVQA-v0", dataset=f"vstar:{root}", dataset_kwargs={"on_error": "skip"})
        assert any(issubclass(w.category, DataWarning) for w in caught)
        assert len(env.unwrapped.dataset) == 2
        env.close()
