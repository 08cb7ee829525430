"""What `mgpo train` and `mgpo eval` show a user: datasets named on the command line, evaluations during and
after training, the report, the closing table, and the size and time of an evaluation before it runs."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from mgpo_agents.cli import main  # noqa: E402
from mgpo_agents.config import add_config_arguments, config_from_args  # noqa: E402
from mgpo_agents.evaluation import time_estimate  # noqa: E402
from mgpo_agents.train_command import before_after_table  # noqa: E402
from mgpo_agents.trainer import progress_postfix  # noqa: E402
from mgpo_tools.episode_store import EpisodeStore  # noqa: E402


def parse(*flags: str):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(list(flags)))


# ------------------------------------------------------------- datasets named on the command line
def test_a_dataset_named_on_the_command_line_does_not_inherit_the_presets_options():
    config = parse("--preset", "tiny-cpu", "--dataset", "jsonl:data/train.jsonl")
    assert config.dataset_kwargs == {}
    assert (config.eval_dataset, config.eval_dataset_kwargs) == ("jsonl:data/train.jsonl", {})  # the evaluation follows


def test_the_evaluation_keeps_its_own_data_when_it_is_named_and_follows_the_training_options_otherwise():
    named = parse("--preset", "tiny-cpu", "--dataset", "jsonl:a.jsonl", "--eval-dataset", "jsonl:b.jsonl")
    assert (named.dataset, named.eval_dataset) == ("jsonl:a.jsonl", "jsonl:b.jsonl")
    options = parse("--preset", "tiny-cpu", "--dataset", "jsonl:a.jsonl", "--dataset-kwargs", '{"image_root": "img"}')
    assert options.dataset_kwargs == options.eval_dataset_kwargs == {"image_root": "img"}
    same = parse("--preset", "tiny-cpu", "--dataset", "synthetic")  # the preset's own dataset keeps its options
    assert same.dataset_kwargs["canvas_size"] == 1792 and same.eval_dataset_kwargs["seed"] == 1
    no_eval = parse("--preset", "paper", "--dataset", "jsonl:a.jsonl")  # a preset without evaluation gains none
    assert no_eval.eval_dataset == ""


@pytest.mark.slow
def test_training_on_a_jsonl_file_from_a_preset_with_synthetic_options(tmp_path, tiny_training_config):
    rows = []
    for i in range(2):
        Image.new("RGB", (640, 480), (40 * i, 90, 160)).save(tmp_path / f"{i}.jpg")
        rows.append({"image": f"{i}.jpg", "question": "Which colour is the sky?", "choices": ["blue", "green"], "answer": "A", "boxes": [[0, 0, 320, 240]]})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tiny_training_config(steps=1, eval_samples=2)
    config_file = tmp_path / "tiny.json"
    config.save(config_file)
    out = tmp_path / "jsonl-run"
    # The saved config's dataset is the synthetic task with num_samples and canvas_size: a JSONL loader refused them.
    code = main(["train", "--config", str(config_file), "--dataset", f"jsonl:{tmp_path / 'train.jsonl'}", "--eval-dataset", f"jsonl:{tmp_path / 'train.jsonl'}",
                 "--output", str(out), "--no-progress"])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset_kwargs"] == {} and saved["eval_dataset_kwargs"] == {}
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


# ------------------------------------------------------------------------ evaluations and the report
@pytest.mark.slow
def test_a_run_evaluates_along_the_way_stores_its_episodes_and_ends_with_the_table_and_paths(tmp_path, tiny_training_config, capsys):
    config = tiny_training_config(
        steps=2, eval_every=1, eval_dataset="synthetic", eval_dataset_kwargs={"num_samples": 3, "seed": 1, "canvas_size": 1024, "target_size": 64},
        eval_samples=3, save_rollouts_every=1, save_eval_episodes=True, report=True,
    )
    config_file = tmp_path / "tiny.json"
    config.save(config_file)
    out = Path(config.output_dir)
    assert main(["train", "--config", str(config_file), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()

    summaries = [json.loads(line) for line in (out / "eval" / "summary.jsonl").read_text().splitlines()]
    assert [(s["label"], s["step"]) for s in summaries] == [("before", 0), ("step1", 1), ("after", 2)]
    records = list(EpisodeStore(out / "episodes").iter_records())
    evaluated = sorted((r.step, r.sample_id) for r in records if r.split == "eval")
    assert evaluated == sorted((step, f"synthetic-1-{i}") for step in (0, 1, 2) for i in range(3))
    assert sum(r.split == "train" for r in records) == 2 * config.group_size  # one question a step, both steps stored
    html = (out / "report.html").read_text()
    assert "https://" not in html and len(html) > 10_000

    # The last lines: the before -> after table, then the paths to open, the report among them.
    assert lines[-3:] == [f"metrics: {out / 'metrics.jsonl'}", f"curves:  {out / 'curves.png'}", f"report:  {out / 'report.html'}"]
    table = lines[-8:-3]
    assert table[0].startswith("held-out (3 questions)") and table[0].endswith("step 0   step 2")
    first, last = summaries[0], summaries[-1]
    assert table[1] == f"{'accuracy':26} {first['accuracy']:7.3f} -> {last['accuracy']:6.3f}  ({last['accuracy'] - first['accuracy']:+.3f})"
    assert table[2].startswith("crop hit rate") and f"{last['hit_rate']:6.3f}" in table[2]


def test_the_closing_table_computes_each_change():
    table = before_after_table(
        {"step": 0, "accuracy": 0.25, "hit_rate": 0.1, "valid_box_rate": 0.5, "mean_iou": 0.05, "episodes": 8},
        {"step": 40, "accuracy": 0.625, "hit_rate": 0.75, "valid_box_rate": 1.0, "mean_iou": 0.3, "episodes": 8},
    ).splitlines()
    assert table[1].split()[-1] == "(+0.375)" and table[2].split()[-1] == "(+0.650)" and table[4].split()[-1] == "(+0.250)"
    missing_before = before_after_table(None, {"step": 3, "accuracy": 0.5, "hit_rate": 0.5, "valid_box_rate": 1.0, "mean_iou": 0.1, "episodes": 2})
    assert "nan" in missing_before.splitlines()[1]


def test_the_progress_bar_shows_reward_accuracy_and_hit_rate():
    postfix = progress_postfix({"reward_mean": 0.5, "accuracy": 0.5, "hit_rate": math.nan, "kl": 0.01234})
    assert postfix == {"reward": "0.50", "acc": "0.50", "hit": "n/a", "kl": "0.012"}


# --------------------------------------------------------------------------------- mgpo eval
def test_the_time_estimate_scales_the_first_batch():
    assert time_estimate(1000, 16, 48.0) == "about 50 min for all 1000 questions (3.0 s a question)"
    assert time_estimate(10, 5, 10.0) == "about 20 s for all 10 questions (2.0 s a question)"
    assert time_estimate(20_000, 10, 30.0).startswith("about 16.7 h")


@pytest.mark.slow
def test_eval_says_how_many_questions_and_how_long_before_the_bulk_of_the_work(tmp_path, tiny_dir, capsys):
    code = main([
        "eval", "--model", str(tiny_dir), "--dataset-kwargs", json.dumps({"num_samples": 5, "canvas_size": 512, "target_size": 48}),
        "--min-pixels", str(16 * 28 * 28), "--max-pixels", str(36 * 28 * 28), "--max-new-tokens", "4", "--batch-questions", "2",
        "--output", str(tmp_path / "eval"),
    ])
    assert code == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    count_line = out.index("mgpo eval: all 5 questions of synthetic (--samples N evaluates fewer)")
    estimate_line = out.index("mgpo eval: about ")
    assert count_line < estimate_line < out.index('"episodes": 5')
    assert "for all 5 questions" in out


def test_a_missing_model_folder_is_a_clear_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the emergence preset's checkpoint path is relative to the repository root
    assert main(["train", "--preset", "emergence", "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mgpo train: model directory 'benchmarks/checkpoints/emergence-warmstart'")
    assert f"relative to the current folder, {tmp_path}" in err and "--model" in err


@pytest.mark.slow
def test_evaluation_episodes_alone_share_the_runs_store_and_no_rollout_is_stored(tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    config = tiny_training_config(
        steps=1, eval_dataset="synthetic", eval_dataset_kwargs={"num_samples": 2, "canvas_size": 1024, "target_size": 64},
        save_rollouts_every=0, save_eval_episodes=True,
    )
    trainer = MGPOTrainer(config)
    trainer.train(progress=False)  # rollouts are not stored (save_rollouts_every 0), and the step does not divide by it
    trainer.evaluate("after")
    records = list(trainer.episode_store.iter_records())
    assert trainer.episode_store.root == Path(config.output_dir) / "episodes"
    assert sorted((r.split, r.step, r.sample_id) for r in records) == [("eval", 1, "synthetic-0-0"), ("eval", 1, "synthetic-0-1")]
