"""Hugging Face datasets, in memory or saved with ``save_to_disk`` (:mod:`mgpo_datasets.hf_dataset`)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from mgpo_datasets.dataset_base import DataWarning
from mgpo_datasets.hf_dataset import load_hf_dataset
from mgpo_datasets.image_files import decode_image, image_size
from mgpo_datasets.registry import resolve_dataset
from mgpo_datasets.sample import DataError

from .loader_helpers import episode, jpeg_bytes, write_jpeg

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


class TestThroughEnvironment:
    """``gym.make("mgpo/HighResVQA-v0", dataset=...)`` with a Dataset object, as users meet the loader."""

    def test_hf_dataset_object(self):
        ds = datasets.Dataset.from_dict(hf_table())
        env, _, _ = episode(ds, "2", (384, 240), (5.0, 5.0, 90.0, 95.0))
        env.close()
