"""The free-form RL comparison's methods (benchmarks/emergence/freeform_rl.py)."""

import json

import pytest

from emergence.freeform_rl import METHODS, FreeformRLSettings, method_config, run_method
from emergence.freeform_task import HIT_CAP


def test_each_method_differs_only_in_protocol_turn_one_and_image_budget(tmp_path):
    settings = FreeformRLSettings(top_p=0.7, learning_rate=3e-5)
    configs = {m: method_config(tmp_path, m, 0, settings, tmp_path / m, fixed_box="fixed:10,10,60,60") for m in METHODS}
    assert (configs["mgpo"].top_p, configs["mgpo"].learning_rate) == (0.7, 3e-5)
    assert configs["mgpo"].max_pixels == 128 * 28 * 28 and configs["grpo-equal-tokens"].max_pixels == 256 * 28 * 28
    assert (configs["grpo-equal-tokens"].protocol, configs["mgpo"].first_turn, configs["random-box"].first_turn) == ("single_turn", "", "random")
    assert configs["fixed-box"].first_turn == "fixed:10,10,60,60" and configs["oracle"].first_turn == "oracle"
    shared = ("learning_rate", "group_size", "prompts_per_step", "kl_coef", "temperature", "top_p", "steps", "dataset_kwargs", "eval_dataset_kwargs")
    for config in configs.values():
        assert all(getattr(config, k) == getattr(configs["mgpo"], k) for k in shared)
    assert configs["mgpo"].eval_dataset_kwargs["seed"] != configs["mgpo"].dataset_kwargs["seed"]
    with pytest.raises(ValueError, match="fixed:x1"):
        method_config(tmp_path, "fixed-box", 0, settings, tmp_path / "f")
    with pytest.raises(ValueError, match="unknown method"):
        method_config(tmp_path, "ppo", 0, settings, tmp_path / "p")


@pytest.mark.slow
def test_a_run_evaluates_before_during_and_after_with_tight_hits(tmp_path):
    from emergence.experiment import COMMITTED_CHECKPOINT

    settings = FreeformRLSettings(steps=2, group_size=2, prompts_per_step=1, eval_every=1, eval_questions=3, train_questions=4)
    oracle = run_method(COMMITTED_CHECKPOINT, "oracle", 0, settings, tmp_path / "oracle", progress=False)
    assert [e["step"] for e in oracle] == [0, 1, 2]
    # The oracle's box is the smallest valid one around the target: every episode is a tight hit.
    assert all(e["tight_hit_rate"] == 1.0 and e["valid_box_rate"] == 1.0 for e in oracle)
    rows = [json.loads(line) for line in (tmp_path / "oracle" / "eval" / "before-step0.jsonl").read_text().splitlines()]
    assert all(r["side_ratio"] <= HIT_CAP for r in rows) and all(r["visual_tokens"] <= 2 * 121 for r in rows)
    single = run_method(COMMITTED_CHECKPOINT, "grpo-equal-tokens", 0, settings, tmp_path / "single", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "single" / "eval" / "after-step2.jsonl").read_text().splitlines()]
    assert all(r["visual_tokens"] == 256 for r in rows) and single[-1]["tight_hit_rate"] == 0.0


@pytest.mark.slow
def test_the_best_fixed_box_is_confirmed_with_the_model_on_training_questions():
    from emergence.experiment import COMMITTED_CHECKPOINT
    from emergence.freeform_rl import best_fixed_box
    from mgpo_env.scripted_turn import check_rule

    found = best_fixed_box(COMMITTED_CHECKPOINT, questions=4, confirm=2)
    assert check_rule(found["rule"]) is None and len(found["confirmed"]) == 2
    assert found["rule"] in [c["rule"] for c in found["confirmed"]]
    assert max(c["accuracy"] for c in found["confirmed"]) == next(c["accuracy"] for c in found["confirmed"] if c["rule"] == found["rule"])
    expected = [s["expected"] for s in found["screened_top"]]
    assert expected == sorted(expected, reverse=True) and expected[0] > 0.29  # a box that holds some targets beats chance


def test_the_main_job_trains_mgpo_as_the_experiment_does(tmp_path):
    """`make run` (the "freeform" preset) is an MGPO run of the experiment: same task, base, budget and trainer settings."""
    from emergence.experiment import REPOSITORY_ROOT
    from emergence.freeform_compare import COMMITTED_BASE, FINAL_EVAL_SEED
    from mgpo_agents.config import preset

    config = preset("freeform").to_dict()
    run = method_config(COMMITTED_BASE, "mgpo", 0, FreeformRLSettings(), tmp_path).to_dict()
    assert (REPOSITORY_ROOT / config["model"]).resolve() == COMMITTED_BASE.resolve()
    for field in ("dataset", "dataset_kwargs", "protocol", "min_pixels", "max_pixels", "box_frame", "env_kwargs", "group_size",
                  "prompts_per_step", "temperature", "top_p", "max_new_tokens", "kl_coef", "learning_rate"):
        assert config[field] == run[field], field
    evaluation = config["eval_dataset_kwargs"]
    assert {k: v for k, v in evaluation.items() if k not in ("num_samples", "seed")} == {k: v for k, v in run["dataset_kwargs"].items() if k not in ("num_samples", "seed")}
    assert evaluation["seed"] not in (run["dataset_kwargs"]["seed"], FINAL_EVAL_SEED)
