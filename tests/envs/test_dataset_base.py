"""The pieces every loader shares (:mod:`mgpo_datasets.dataset_base`).

Option and answer parsing, the loaded sequence, bad-row collection, lazy image
files, and the readers of JSON and JSON Lines files that keep the loaders' error
messages alike.
"""

from __future__ import annotations

import pytest

from mgpo_datasets.dataset_base import (
    DataWarning,
    EmptyDatasetError,
    FileImage,
    LoadedDataset,
    RowCollector,
    image_root_for,
    name_row,
    parse_boxes,
    read_json,
    read_json_lines,
    require_file,
    shuffle_choices,
    split_question_and_options,
    strip_option_prefix,
)
from mgpo_datasets.image_files import ImageLoadError, decode_image
from mgpo_datasets.jsonl_dataset import load_jsonl
from mgpo_datasets.sample import DataError, Sample

from .loader_helpers import write_jsonl


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


class TestReading:
    """The shared readers: a bad file or row is named the same way by every loader."""

    def test_read_json_names_the_file_and_the_line(self, tmp_path):
        path = tmp_path / "q.json"
        path.write_text('[\n  {"a": 1},\n  oops\n]', encoding="utf-8")
        with pytest.raises(DataError, match=r"^survey file '.*q\.json' is not readable JSON: .*line 3 column 3"):
            read_json(path, "survey file", list)
        with pytest.raises(DataError, match=r"^survey file '.*none\.json' does not exist$"):
            read_json(tmp_path / "none.json", "survey file", list)

    def test_read_json_checks_the_kind_of_document(self, tmp_path):
        path = tmp_path / "q.json"
        path.write_text('{"a": 1}', encoding="utf-8")
        assert read_json(path, "annotation") == {"a": 1}
        with pytest.raises(DataError, match=r"q\.json' must hold a JSON list, got dict"):
            read_json(path, "survey file", list)
        with pytest.raises(DataError, match=r"must hold a JSON list of records, got dict"):
            read_json(path, "survey file", list, "a JSON list of records")

    def test_read_json_lines_rejects_a_broken_line_by_the_policy(self, tmp_path):
        path = write_jsonl(tmp_path / "d.jsonl", [{"id": "a"}, "{broken", "", {"id": None}, [1]])
        with pytest.raises(DataError, match=r"d\.jsonl, line 2: not valid JSON"):
            list(read_json_lines(path, RowCollector(str(path)), "id"))
        collector = RowCollector(str(path), on_error="skip")
        rows = list(read_json_lines(path, collector, "id"))
        # blank line 3 is passed over, not counted as a row; line numbers stay those of the file
        assert [(n, where.rsplit(", ", 1)[1], row) for n, where, row in rows] == [
            (1, "line 1 (id 'a')", {"id": "a"}), (4, "line 4", {"id": None}), (5, "line 5", [1])]
        assert [w.rsplit(", ", 1)[1] for w, _ in collector.skipped] == ["line 2"] and collector.rows_seen == 1

    def test_name_row_adds_the_id_only_when_there_is_one(self):
        assert name_row("f, record 3", {"Question_id": "q7"}, "Question_id") == "f, record 3 (Question_id 'q7')"
        assert name_row("f, row 2", {"image_id": 5}, "image_id", "id") == "f, row 2 (id 5)"
        for row, key in [({"id": None}, "id"), ({}, "id"), (["id"], "id"), ({"id": "x"}, None)]:
            assert name_row("f, line 1", row, key) == "f, line 1"

    def test_file_and_image_root_checks(self, tmp_path):
        path = tmp_path / "data" / "d.jsonl"
        with pytest.raises(DataError, match=r"^JSONL file '.*d\.jsonl' does not exist$"):
            require_file(path, "JSONL file")
        path.parent.mkdir()
        path.write_text("")
        require_file(path, "JSONL file")
        assert image_root_for(path, None) == path.parent
        with pytest.raises(DataError, match=r"image root '.*nope' for '.*d\.jsonl' is not a directory"):
            image_root_for(path, tmp_path / "nope")
