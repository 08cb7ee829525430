"""``mgpo data SPEC``: load, check and summarise a dataset (:mod:`mgpo_datasets.data_check`)."""

from __future__ import annotations

import argparse
import json

from mgpo_datasets import data_check

from .loader_helpers import make_hr, make_mme, make_vstar, write_jpeg, write_jsonl, write_truncated_jpeg


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


def test_unreadable_images_reads_headers_or_decodes_and_changes_nothing(tmp_path):
    from mgpo_datasets import resolve_dataset
    from mgpo_datasets.synthetic import SyntheticTask

    for i in range(4):
        write_jpeg(tmp_path / f"{i}.jpg")
    write_truncated_jpeg(tmp_path / "1.jpg")
    (tmp_path / "3.jpg").write_bytes(b"not an image at all")
    write_jsonl(tmp_path / "train.jsonl", [{"id": f"q{i}", "image": f"{i}.jpg", "question": "?", "answer": "x"} for i in range(4)])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    dataset = resolve_dataset(f"jsonl:{tmp_path / 'train.jsonl'}")
    headers = data_check.unreadable_images(dataset)
    assert [(index, sample_id) for index, sample_id, _ in headers] == [(3, "q3")]  # a truncated body has a good header
    decoded = data_check.unreadable_images(dataset, decode=True, progress=True)
    assert [(index, sample_id) for index, sample_id, _ in decoded] == [(1, "q1"), (3, "q3")]
    assert "1.jpg" in decoded[0][2] and "truncated" in decoded[0][2]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # Images drawn on demand have no file to check; stored_only=False draws them.
    synthetic = SyntheticTask(num_samples=2, canvas_size=256)
    assert not data_check.stored_image(synthetic[0].image)
    assert data_check.unreadable_images(synthetic) == [] and data_check.unreadable_images(synthetic, stored_only=False) == []
