"""The free-form comparison's commands and report, on run folders written here (no training)."""

import json

import pytest

from emergence.freeform_compare import FINAL_EVAL_SEED, collect_runs, results_record, results_table, run_commands, write_report
from emergence.freeform_rl import FreeformRLSettings
from emergence.freeform_supervised import CHECK_SEED


def _write_run(output, method, seed, curve):
    folder = output / "runs" / f"{method}-seed{seed}"
    folder.mkdir(parents=True)
    rows = [{"method": method, "seed": seed, "step": step, "accuracy": acc, "valid_box_rate": 1.0, "tight_hit_rate": hit, "mean_iou": iou,
             "median_area_ratio": 2.0} for step, acc, hit, iou in curve]
    (folder / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))  # out of order on purpose


def test_each_method_and_seed_gets_one_command_with_the_same_settings(tmp_path):
    settings = FreeformRLSettings(eval_seed=FINAL_EVAL_SEED, learning_rate=3e-5)
    commands = run_commands(tmp_path / "ck", tmp_path / "out", settings, [0, 1], ["random-box", "grpo-equal-tokens", "mgpo", "fixed-box"], "fixed:1,2,40,41")
    assert len(commands) == 8
    assert [c[c.index("--method") + 1] for c in commands][:2] == ["mgpo", "mgpo"]  # the longest runs first
    chosen = {json.loads(c[c.index("--settings") + 1])["learning_rate"] for c in commands}
    assert chosen == {3e-5} and all(json.loads(c[c.index("--settings") + 1])["eval_seed"] == FINAL_EVAL_SEED for c in commands)
    outputs = sorted(c[c.index("--output") + 1] for c in commands)
    assert outputs[0].endswith("fixed-box-seed0") and len(set(outputs)) == 8
    fixed = [c for c in commands if "fixed-box" in c]
    assert all(c[c.index("--fixed-box") + 1] == "fixed:1,2,40,41" for c in fixed)
    with pytest.raises(ValueError, match="search it first"):
        run_commands(tmp_path, tmp_path, settings, [0], ["fixed-box"])


def test_the_final_evaluation_seed_is_no_probe_seed():
    assert FINAL_EVAL_SEED not in (CHECK_SEED, 120, 12, 11, 0, 1, 2, 3)


def test_the_report_gives_before_after_per_method_and_seed(tmp_path):
    _write_run(tmp_path, "mgpo", 0, [(0, 0.3, 0.1, 0.05), (50, 0.7, 0.6, 0.3)])
    _write_run(tmp_path, "mgpo", 1, [(0, 0.3, 0.1, 0.05), (50, 0.5, 0.4, 0.2)])
    _write_run(tmp_path, "grpo-equal-tokens", 0, [(0, 0.25, 0.0, 0.0), (50, 0.3, 0.0, 0.0)])  # one turn: no crop, as the evaluation writes it
    runs = collect_runs(tmp_path)
    assert list(runs) == ["mgpo", "grpo-equal-tokens"] and [r["seed"] for r in runs["mgpo"]] == [0, 1]
    record = results_record(runs)
    assert record["mgpo"][0]["before"]["accuracy"] == 0.3 and record["mgpo"][0]["after"]["tight_hit_rate"] == 0.6
    table = results_table(record).splitlines()
    mgpo = table[2].split(" | ")
    assert mgpo[1:4] == ["2", "0.300 ± 0.000", "0.600 ± 0.141"]  # mean and sample std of 0.7 and 0.5
    assert "— (no box)" in table[3]
    data = write_report(tmp_path, seconds=600.0)
    saved = json.loads((tmp_path / "emergence.json").read_text())
    assert saved["runs"]["mgpo"][1]["after"]["mean_iou"] == 0.2 and saved["seconds"] == 600.0 and data["hit_cap"] == saved["hit_cap"]
    assert (tmp_path / "emergence_curves.png").stat().st_size > 10_000
    assert "10.0 min" in (tmp_path / "emergence.md").read_text()
    assert write_report(tmp_path)["seconds"] == 600.0  # a redraw keeps the recorded wall time


def test_a_report_without_runs_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        write_report(tmp_path)


def test_one_seed_shows_its_value_without_a_spread(tmp_path):
    _write_run(tmp_path, "oracle", 3, [(0, 0.8, 0.9, 0.5), (10, 0.85, 0.9, 0.5)])
    row = results_table(results_record(collect_runs(tmp_path))).splitlines()[2]
    assert row.startswith("| oracle crop (upper bound) | 1 | 0.800 | 0.850 | 1.000 | 0.900 |")


def test_the_command_line_hands_settings_and_the_final_seed_on(monkeypatch, tmp_path):
    """freeform-compare defaults to the fresh evaluation seed, --settings overrides it; freeform-rl passes its settings."""
    import emergence.freeform_compare as compare_module
    import emergence.freeform_rl as rl_module
    from emergence.commands import main

    seen = {}
    monkeypatch.setattr(compare_module, "compare_freeform", lambda ck, out, settings, seeds, methods, lanes: seen.update(
        compare=(settings, list(seeds), list(methods), lanes)))
    monkeypatch.setattr(rl_module, "run_method", lambda ck, method, seed, settings, out, fixed_box=None: seen.update(rl=(method, seed, settings, fixed_box)))
    assert main(["freeform-compare", "--checkpoint", str(tmp_path), "--output", str(tmp_path / "o"), "--seeds", "4", "5", "--methods", "mgpo", "oracle"]) == 0
    settings, seeds, methods, lanes = seen["compare"]
    assert (settings.eval_seed, seeds, methods, lanes) == (FINAL_EVAL_SEED, [4, 5], ["mgpo", "oracle"], 2)
    main(["freeform-compare", "--checkpoint", str(tmp_path), "--output", str(tmp_path / "o"), "--settings", '{"eval_seed": 5, "top_p": 0.7}', "--steps", "9"])
    assert (seen["compare"][0].eval_seed, seen["compare"][0].top_p, seen["compare"][0].steps) == (5, 0.7, 9)
    main(["freeform-rl", "--method", "fixed-box", "--fixed-box", "fixed:1,1,40,40", "--seed", "3", "--checkpoint", str(tmp_path),
          "--output", str(tmp_path / "r"), "--threads", "1", "--settings", '{"learning_rate": 3e-05, "top_p": 0.7}'])
    method, seed, settings, fixed = seen["rl"]
    assert (method, seed, settings.learning_rate, settings.top_p, settings.threads, fixed) == ("fixed-box", 3, 3e-05, 0.7, 1, "fixed:1,1,40,40")
    with pytest.raises(SystemExit):
        main(["freeform-compare", "--base-settings", "{}", "--checkpoint", str(tmp_path)])


def test_a_report_keeps_to_the_comparisons_own_methods_and_seeds(tmp_path):
    """Runs left in the folder by an earlier comparison do not enter this one's table."""
    _write_run(tmp_path, "mgpo", 0, [(0, 0.3, 0.1, 0.05), (10, 0.4, 0.2, 0.1)])
    _write_run(tmp_path, "mgpo", 9, [(0, 0.3, 0.1, 0.05), (10, 0.9, 0.9, 0.9)])
    _write_run(tmp_path, "oracle", 0, [(0, 0.8, 0.9, 0.5), (10, 0.85, 0.9, 0.5)])
    (tmp_path / "settings.json").write_text(json.dumps({"methods": ["mgpo"], "seeds": [0], "lanes": 1, "learning_rate": 3e-5}))
    data = write_report(tmp_path, seconds=60.0)
    assert list(data["runs"]) == ["mgpo"] and [r["seed"] for r in data["runs"]["mgpo"]] == [0]
    page = (tmp_path / "emergence.md").read_text()
    assert "--seeds 0 --methods mgpo --lanes 1 --settings '{\"learning_rate\": 3e-05}'" in page and "(1 lane, one CPU thread each)" in page


def test_the_trained_weights_shown_are_the_lowest_seed_mgpo_runs_last(tmp_path):
    from emergence.freeform_compare import trained_mgpo

    for seed, steps in ((2, ["step-000010"]), (1, ["step-000010", "step-000060"]), (0, [])):
        for step in steps:
            (tmp_path / "runs" / f"mgpo-seed{seed}" / "checkpoints" / step).mkdir(parents=True)
        (tmp_path / "runs" / f"mgpo-seed{seed}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / f"mgpo-seed{seed}" / "evals.jsonl").write_text("{}\n")
    (tmp_path / "runs" / "mgpo-seed-1" / "checkpoints" / "step-000060").mkdir(parents=True)  # unfinished: no evals.jsonl
    (tmp_path / "runs" / "oracle-seed0" / "checkpoints" / "step-000060").mkdir(parents=True)
    assert trained_mgpo(tmp_path) == tmp_path / "runs" / "mgpo-seed1" / "checkpoints" / "step-000060"
    assert trained_mgpo(tmp_path, seeds=[0, 2]) == tmp_path / "runs" / "mgpo-seed2" / "checkpoints" / "step-000010"
    assert trained_mgpo(tmp_path, seeds=[0]) is None


@pytest.mark.slow
def test_the_episode_picture_plays_the_first_held_out_questions(tmp_path):
    from PIL import Image

    from emergence.freeform_compare import COMMITTED_BASE, episodes_picture
    from emergence.freeform_task import FREEFORM_TASK
    from mgpo_datasets.synthetic import SyntheticTask

    shown = episodes_picture(COMMITTED_BASE, eval_seed=5, questions=10, path=tmp_path / "e.png", count=2)
    task = SyntheticTask(10, seed=5, **FREEFORM_TASK)
    assert shown["questions"] == [0, 1]
    for i, episode in enumerate(shown["episodes"]):
        assert episode["question"] == task[i].question
        assert episode["target_box"] == pytest.approx(list(task[i].target_boxes[0]))
        assert len(episode["replies"]) == 2  # after an invalid box the question is asked again, without a crop
    width, height = Image.open(tmp_path / "e.png").size
    assert width > 2 * height  # one row of two episodes, two panels each


def test_the_report_says_what_mgpos_crops_held_from_its_own_seeds_only(tmp_path):
    from emergence.freeform_compare import coverage_section, episode_rows

    for seed, correct in ((0, True), (7, False), (9, False)):
        folder = tmp_path / "runs" / f"mgpo-seed{seed}" / "eval"
        folder.mkdir(parents=True)
        row = {"category": "colour", "crop_box": [0, 0, 30, 30], "target_box": [10, 10, 20, 20], "correct": correct}
        (folder / "after-step60.jsonl").write_text(json.dumps(row) + "\n")
        (folder / "before-step0.jsonl").write_text(json.dumps(row) + "\n")
        if seed != 9:  # seed 9 never finished: no evals.jsonl
            (folder.parent / "evals.jsonl").write_text("{}\n")
    assert [r["correct"] for r in episode_rows(tmp_path, "mgpo", None, "after")] == [True, False]
    assert [r["correct"] for r in episode_rows(tmp_path, "mgpo", None, "before")] == [True]  # one seed's: all start alike
    assert episode_rows(tmp_path, "oracle", [0], "before") == []
    lines = coverage_section(tmp_path, [0])
    assert "MGPO after RL, accuracy by what the crop held (episodes; all seeds pooled):" in lines
    assert "| colour | 1.00 (1) | — | — | — |" in lines and any(line.startswith("MGPO before") for line in lines)
    assert coverage_section(tmp_path / "empty", None) == []
