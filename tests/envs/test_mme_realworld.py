"""MME-RealWorld's JSON list of records (:mod:`mgpo_datasets.mme_realworld`)."""

from __future__ import annotations

import pytest

from mgpo_datasets.image_files import ImageLoadError, decode_image
from mgpo_datasets.mme_realworld import load_mme_realworld
from mgpo_datasets.registry import resolve_dataset
from mgpo_datasets.sample import DataError

from .loader_helpers import episode, make_mme, mme_record, one_bad_row, write_truncated_jpeg


class TestMMERealWorld:
    def test_records(self, tmp_path):
        data = load_mme_realworld(make_mme(tmp_path / "mme"))
        assert data.sample_ids == [f"perception/remote_sensing/color/{i:04d}" for i in range(3)]  # str(Question_id)
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
        data = one_bad_row(load_mme_realworld, path, message,
                           "MME_RealWorld.json, record 2 (Question_id 'perception/remote_sensing/color/0002')")
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


class TestThroughEnvironment:
    """``gym.make("mgpo/HighResVQA-v0", dataset=...)`` with an MME-RealWorld file, as users meet the loader."""

    def test_mme_realworld(self, tmp_path):
        env, _, _ = episode(f"mme-realworld:{make_mme(tmp_path / 'mme')}", "perception/remote_sensing/color/0002", (768, 480), None)
        env.close()
