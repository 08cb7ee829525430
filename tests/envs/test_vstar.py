"""V* Bench in its published folder layout (:mod:`mgpo_datasets.vstar`).

The folders come from :func:`loader_helpers.make_vstar`: three annotated images
and ``test_questions.jsonl``, with the correct option at a different letter per
question.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from mgpo_datasets.dataset_base import DataWarning, LoadedDataset
from mgpo_datasets.image_files import ImageLoadError, decode_image, image_size
from mgpo_datasets.registry import resolve_dataset
from mgpo_datasets.sample import DataError
from mgpo_datasets.vstar import load_vstar

from .loader_helpers import episode, jpeg_bytes, make_vstar, write_jpeg, write_jsonl, write_truncated_jpeg


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

    def test_unreadable_annotation_names_the_file_and_line(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        (root / "direct_attributes" / "sa_2.json").write_text('{"bbox": [[1, 2, 3, 4]],\n oops}')
        with pytest.raises(DataError, match=r"test_questions\.jsonl, line 2 \(question_id 1\): annotation '.*sa_2\.json' "
                                            r"is not readable JSON: .*line 2 column 2"):
            load_vstar(root)
        with pytest.raises(DataError, match=r"sa_2\.json: annotation '.*sa_2\.json' is not readable JSON"):
            load_vstar(root, use_questions_file=False)

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


class TestThroughEnvironment:
    """``gym.make("mgpo/HighResVQA-v0", dataset=...)`` with V* Bench folders, as users meet the loader."""

    def test_vstar(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        env, obs, info = episode(f"vstar:{root}", "relative_position/sa_3", (1024, 768), (10.0, 20.0, 600.0, 450.0))
        assert info["category"] == "relative_position"
        assert "(A) right" not in obs["history"][-1]["content"]  # the first turn asks for a region only
        env.close()

    def test_vstar_with_options_and_answer(self, tmp_path):
        root = make_vstar(tmp_path / "vstar")
        env, obs, info = episode(f"vstar:{root}", "direct_attributes/sa_1", (640, 480), (100.0, 120.0, 150.0, 160.0),
                                 dataset_kwargs={"shuffle_choices_seed": None})
        obs, reward, terminated, truncated, info = env.step("[0, 0, 300, 300]")
        assert not terminated and "red" in obs["history"][-1]["content"]
        obs, reward, terminated, truncated, info = env.step("\\boxed{B}")
        assert terminated and reward == 1.0
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
