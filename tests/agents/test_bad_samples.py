"""Bad training samples: one truncated JPEG among eight images is found, listed, counted and skipped, or stops the run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from mgpo_agents.bad_samples import BAD_SAMPLES_FILE, BadSamples
from mgpo_agents.faults import EXIT_BAD_DATA, TooManyBadSamples


def _dataset(folder: Path, bad: int = 1) -> Path:
    """Eight 320x240 JPEGs and their JSONL file; the first ``bad`` images are truncated to half their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(8):
        path = folder / f"{i}.jpg"
        Image.new("RGB", (320, 240), (30 * i, 90, 160)).save(path, quality=90)
        if i < bad:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        rows.append({"id": f"q{i}", "image": path.name, "question": "Which colour is the sky?", "choices": ["blue", "green"], "answer": "A"})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "train.jsonl"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _train(tmp_path: Path, tiny_training_config, data: Path, *flags: str) -> tuple[int, Path]:
    from mgpo_agents.cli import main

    config = tiny_training_config(group_size=2, max_new_tokens=4, prompts_per_step=2, mini_batch_prompts=2, steps=4, save_every=100)
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_file = tmp_path / "config.json"
    config.save(config_file)
    out = tmp_path / "run"
    code = main(["train", "--config", str(config_file), "--dataset", f"jsonl:{data}", "--output", str(out), "--no-progress", *flags])
    return code, out


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("validate", ["header", "decode"])
def test_one_truncated_jpeg_among_eight_is_skipped_listed_and_counted(tmp_path, tiny_training_config, capsys, validate):
    pytest.importorskip("torch")
    data = _dataset(tmp_path / "data")
    before = _digest(data.parent)
    code, out = _train(tmp_path, tiny_training_config, data, "--validate-data", validate)  # the default policy: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    listed = [json.loads(line) for line in (out / BAD_SAMPLES_FILE).read_text().splitlines()]
    assert [(row["index"], row["sample_id"]) for row in listed] == [(0, "q0")]
    assert "0.jpg" in listed[0]["reason"] and "truncated" in listed[0]["reason"]
    # A header check cannot see a truncated body: the step that draws it finds it; a full decode finds it first.
    if validate == "decode":
        assert listed[0]["found"] == "validation"
    else:
        assert listed[0]["found"].startswith("step ")
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # 4 steps x 2 questions: every sample drawn once
    assert sum(r["skipped_samples"] for r in rows) == 1 and rows[-1]["bad_samples_total"] == 1
    assert "skipped" in capsys.readouterr().err
    assert _digest(data.parent) == before  # the data was only read


@pytest.mark.slow
@pytest.mark.parametrize("validate", ["header", "decode"])
def test_on_bad_sample_error_stops_with_the_file_named_and_no_traceback(tmp_path, tiny_training_config, capsys, validate):
    pytest.importorskip("torch")
    data = _dataset(tmp_path / "data")
    code, out = _train(tmp_path, tiny_training_config, data, "--validate-data", validate, "--on-bad-sample", "error")
    err = capsys.readouterr().err
    assert code == EXIT_BAD_DATA
    assert "0.jpg" in err and "--on-bad-sample skip" in err and "Traceback" not in err
    assert [json.loads(line)["sample_id"] for line in (out / BAD_SAMPLES_FILE).read_text().splitlines()] == ["q0"]
    if validate == "decode":
        assert not (out / "metrics.jsonl").exists()  # found before the first step
    else:  # found by the step that drew it, which was not logged
        assert len(_metrics(out) if (out / "metrics.jsonl").exists() else []) < 4


@pytest.mark.slow
def test_more_bad_samples_than_allowed_stop_the_run_before_training(tmp_path, tiny_training_config, capsys):
    pytest.importorskip("torch")
    data = _dataset(tmp_path / "data", bad=2)
    code, out = _train(tmp_path, tiny_training_config, data, "--validate-data", "decode", "--max-bad-fraction", "0.2")
    err = capsys.readouterr().err
    assert code == EXIT_BAD_DATA
    assert "2 of 8 training samples (25.0%) are unreadable" in err and "--max-bad-fraction 0.2" in err
    assert len((out / BAD_SAMPLES_FILE).read_text().splitlines()) == 2


@pytest.mark.slow
def test_a_missing_image_file_is_dropped_by_the_loader_listed_and_counted(tmp_path, tiny_training_config, capsys):
    pytest.importorskip("torch")
    data = _dataset(tmp_path / "data", bad=0)
    (data.parent / "5.jpg").unlink()
    code, out = _train(tmp_path, tiny_training_config, data, "--steps", "1")
    assert code == 0, capsys.readouterr().err[-3000:]
    listed = [json.loads(line) for line in (out / BAD_SAMPLES_FILE).read_text().splitlines()]
    assert len(listed) == 1 and listed[0]["index"] is None and listed[0]["found"] == "loading"
    assert "5.jpg" in listed[0]["reason"] and "line 6" in listed[0]["where"]
    assert _metrics(out)[0]["bad_samples_total"] == 1
    # The same file with a lower allowed share stops before training: 1 of 8 rows (12.5%).
    code, _ = _train(tmp_path / "strict", tiny_training_config, data, "--max-bad-fraction", "0.1")
    assert code == EXIT_BAD_DATA and "1 of 8 training samples (12.5%)" in capsys.readouterr().err


def test_the_bad_sample_list_is_read_back_and_counts_each_sample_once(tmp_path):
    path = tmp_path / BAD_SAMPLES_FILE
    log = BadSamples(path, 10, max_fraction=0.2)
    log.add(3, "q3", "truncated", found="validation")
    log.add(3, "q3", "truncated", found="step 2")  # met again: still one
    log.add(7, "q7", "missing", found="step 4")
    assert len(path.read_text().splitlines()) == 2
    again = BadSamples(path, 10, max_fraction=0.2)
    assert 3 in again and 7 in again and 5 not in again and len(again) == 2
    with pytest.raises(TooManyBadSamples, match=r"3 of 10 training samples \(30.0%\)"):
        again.add(1, "q1", "not an image", found="step 5")
    with pytest.raises(TooManyBadSamples, match="q9"):
        BadSamples(None, 100, policy="error").add(9, "q9", "truncated", found="validation")
    dropped = BadSamples(tmp_path / "dropped.jsonl", 3, max_fraction=0.3)
    dropped.add_unloadable("train.jsonl, line 2", "image file 'b.jpg' does not exist")
    dropped.add_unloadable("train.jsonl, line 2", "image file 'b.jpg' does not exist")
    assert len(BadSamples(tmp_path / "dropped.jsonl", 3)) == 1
    dropped.check()  # 1 of 4 rows: within 0.3
    with pytest.raises(TooManyBadSamples, match=r"2 of 4 training samples \(50.0%\)"):
        dropped.add(0, "a", "truncated", found="validation")
    with pytest.raises(ValueError, match="on_bad_sample"):
        BadSamples(None, 1, policy="ignore")


@pytest.mark.parametrize("stand_in", [True, False])
def test_the_rollout_engine_plays_a_stand_in_for_an_unreadable_sample(tmp_path, tiny_dir, stand_in):
    pytest.importorskip("torch")
    import gymnasium as gym

    from mgpo_agents.qwen_processor import load_model, load_processor
    from mgpo_agents.rollout import RolloutEngine
    from mgpo_datasets.sample import DataError

    data = _dataset(tmp_path / "data", bad=1)
    make = lambda: gym.make("mgpo/HighResVQA-v0", dataset=f"jsonl:{data}", min_pixels=16 * 28 * 28, max_pixels=36 * 28 * 28)  # noqa: E731
    model, processor = load_model(tiny_dir), load_processor(tiny_dir)
    engine = RolloutEngine(model, processor, make, max_new_tokens=4, skip_bad_samples=True, stand_in=(lambda i: i + 1) if stand_in else None)
    result = engine.run([0, 3], group_size=2, group_ids=[5, 6])
    assert [(index, sample_id) for index, sample_id, _ in result.skipped] == [(0, "q0")]
    played = [(t.group, t.sample_index) for t in result.trajectories]
    assert played == ([(5, 1), (5, 1), (6, 3), (6, 3)] if stand_in else [(6, 3), (6, 3)])  # the slot (and its seeds) kept
    strict = RolloutEngine(model, processor, make, max_new_tokens=4)
    with pytest.raises(DataError, match="0.jpg"):
        strict.run([0], group_size=2)
