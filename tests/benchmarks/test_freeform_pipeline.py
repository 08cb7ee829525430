"""The free-form supervised pipeline: random weights, then stages in order (benchmarks/emergence/freeform_pipeline.py)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from emergence.freeform_pipeline import RECIPE, joined_log, run_pipeline, stage_settings
from emergence.freeform_supervised import FreeformBaseSettings

TINY = dict(steps=2, reading_rows=1, grounding_rows=1, guessing_rows=1, pool=6, check_every=1, check_questions=2)


def test_the_recipe_names_only_real_settings_and_leaves_seed_and_threads_to_the_run():
    fields = set(FreeformBaseSettings.__dataclass_fields__)
    assert len({name for name, _ in RECIPE}) == len(RECIPE)
    for _, stage in RECIPE:
        assert set(stage) <= fields and not {"seed", "threads"} & set(stage)
    assert RECIPE[-1][1]["reading_most"] == 1.8 and RECIPE[-1][1]["gate_ratio"] == 1.6


def test_a_stage_takes_the_runs_seed_and_threads_and_carries_the_level_unless_it_names_one():
    chosen = stage_settings({"steps": 7, "learning_rate": 1e-4, "seed": 9}, seed=2, threads=1, level=3)
    assert (chosen.steps, chosen.learning_rate, chosen.seed, chosen.threads, chosen.start_level) == (7, 1e-4, 2, 1, 3)
    assert stage_settings({"start_level": 0}, seed=2, threads=1, level=3).start_level == 0


def test_the_joined_log_puts_every_stage_on_one_step_axis():
    lineage = [{"checks": [{"step": 0, "a": 1}, {"step": 50, "a": 2}]}, {"checks": [{"step": 0, "a": 2}, {"step": 30, "a": 3}, {"step": 60, "a": 4}]}]
    assert [(c["step"], c["a"]) for c in joined_log(lineage)] == [(0, 1), (50, 2), (80, 3), (110, 4)]


def _tensors(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_the_pipeline_starts_from_random_weights_chains_its_stages_and_resumes(tmp_path):
    from emergence.experiment import build_base_model

    recipe = [("one", dict(TINY, learning_rate=1e-3, start_level=2)), ("two", dict(TINY, steps=1, learning_rate=1e-3, grounding_clutter=0))]
    checkpoint = run_pipeline(tmp_path / "run", seed=3, threads=1, recipe=recipe, summary_questions=2, progress=False)
    # the start is build_base_model's weights for this seed (rebuilt independently), and training moved them
    fresh = _tensors(build_base_model(tmp_path / "fresh", seed=3))
    start, end = _tensors(tmp_path / "run" / "init"), _tensors(checkpoint)
    assert all(torch.equal(fresh[k], start[k]) for k in fresh)
    assert any(not torch.equal(start[k], end[k]) for k in start)
    # each stage starts from the last check of the one before; the checkpoint is the last stage's last check
    one = json.loads((tmp_path / "run" / "one" / "settings.json").read_text())
    two = json.loads((tmp_path / "run" / "two" / "settings.json").read_text())
    assert one["init"] == str(tmp_path / "run" / "init") and two["init"] == str(tmp_path / "run" / "one" / "step-2")
    one_log = [json.loads(line) for line in (tmp_path / "run" / "one" / "log.jsonl").read_text().splitlines()]
    assert (one["seed"], one["start_level"], two["start_level"]) == (3, 2, one_log[-1]["level_next"])  # the level carries on
    last = _tensors(tmp_path / "run" / "two" / "step-1")
    assert all(torch.equal(last[k], end[k]) for k in last)
    record = json.loads((checkpoint / "stage.json").read_text())
    assert [(s["run"], s["steps"]) for s in record["lineage"]] == [("one", 2), ("two", 1)]
    assert [c["step"] for c in record["lineage"][0]["checks"]] == [0, 1, 2]
    # a stage whose grounding rows use other canvases is also checked on those
    assert all("grounding_rows_canvas" in c for c in record["lineage"][1]["checks"])
    assert not any("grounding_rows_canvas" in c for c in record["lineage"][0]["checks"])
    assert record["seed"] == 3 and record["command"] == "python benchmarks/emergence.py supervised --base-seeds 3"
    assert 0.0 <= record["held_out"]["accuracy"] <= 1.0 and "2 questions" in record["held_out"]["what"]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0
    # a rerun trains nothing more: the stage logs stay as they were
    logs = [(tmp_path / "run" / n / "log.jsonl").read_text() for n in ("one", "two")]
    run_pipeline(tmp_path / "run", seed=3, threads=1, recipe=recipe, summary_questions=2, progress=False)
    assert [(tmp_path / "run" / n / "log.jsonl").read_text() for n in ("one", "two")] == logs
    # cut short after stage two's first check: the rerun trains its last step again from there, and says so
    two_log = tmp_path / "run" / "two" / "log.jsonl"
    two_log.write_text(two_log.read_text().splitlines()[0] + "\n")
    again = run_pipeline(tmp_path / "run", seed=3, threads=1, recipe=recipe, summary_questions=2, progress=False)
    redone = [json.loads(line) for line in two_log.read_text().splitlines()]
    assert [c["step"] for c in redone] == [0, 1] and redone[1]["resumed_from"] == 0 and "resumed_from" not in redone[0]
    assert json.loads((again / "stage.json").read_text())["lineage"][1]["checks"][1]["resumed_from"] == 0
    # a recipe that changed under a finished stage is refused, not mixed with it
    changed = [("one", dict(TINY, learning_rate=5e-4, start_level=2)), recipe[1]]
    with pytest.raises(ValueError, match="learning_rate was 0.001, not 0.0005"):
        run_pipeline(tmp_path / "run", seed=3, threads=1, recipe=changed, summary_questions=2, progress=False)


def test_a_recipe_must_have_distinct_stages(tmp_path):
    with pytest.raises(ValueError, match="no stages"):
        run_pipeline(tmp_path, recipe=[])
    with pytest.raises(ValueError, match="must differ"):
        run_pipeline(tmp_path, recipe=[("a", {}), ("a", {})])
