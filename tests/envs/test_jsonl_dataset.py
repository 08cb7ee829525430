"""Your own data as JSON Lines (:mod:`mgpo_datasets.jsonl_dataset`)."""

from __future__ import annotations

import os

import pytest

from mgpo_datasets.dataset_base import EmptyDatasetError
from mgpo_datasets.image_files import decode_image, image_size
from mgpo_datasets.jsonl_dataset import load_jsonl
from mgpo_datasets.sample import DataError

from .loader_helpers import episode, one_bad_row, write_jpeg, write_jsonl


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
        data = one_bad_row(load_jsonl, path, message, "train.jsonl, line 2")
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


class TestThroughEnvironment:
    """``gym.make("mgpo/HighResVQA-v0", dataset=...)`` with a JSONL file, as users meet the loader."""

    def test_jsonl(self, tmp_path):
        write_jpeg(tmp_path / "a.jpg", (900, 700))
        path = write_jsonl(tmp_path / "d.jsonl", [{"id": "one", "image": "a.jpg", "question": "Q?", "choices": ["x", "y"], "answer": "A", "boxes": [[1, 2, 300, 400]]}])
        env, _, _ = episode(f"jsonl:{path}", "one", (900, 700), (1.0, 2.0, 300.0, 400.0))
        env.close()
