"""The miniature experiment's building blocks: leak-free attribute, cell boxes, training rows,
the parity of the two methods' settings, and the results table."""

import json
import random
from dataclasses import asdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import emergence.experiment as E
from emergence.position_code import load_task_processor as load_processor
from mgpo_env.geometry import contains
from mgpo_datasets.synthetic import SyntheticTask


def test_the_answer_is_invisible_in_the_view_and_plain_in_the_cell_crop():
    check = E.attribute_leak_check(layouts=6)
    assert check["view_max_difference"] == 0.0
    assert check["crop_max_difference"] > 200


def test_boxing_the_targets_cell_crops_a_region_that_holds_it():
    task = SyntheticTask(30, seed=5, **E.TASK_KWARGS)
    env = E.make_env(task)
    for i in range(30):
        _, info = env.reset(options={"index": i})
        _, _, _, _, info = env.step(E.cell_box_text(*E.cell_of(task[i].target_box)))
        assert info["box_valid"] and contains(info["crop_box"], info["target_box"])
        side = E.CANVAS // E.CELLS
        assert info["crop_box"][2] - info["crop_box"][0] == side


def test_random_cells_hit_at_the_chance_rate():
    task = SyntheticTask(400, seed=6, **E.TASK_KWARGS)
    rng = random.Random(0)
    hits = [E.cell_of(task[i].target_box) == (rng.randrange(E.CELLS), rng.randrange(E.CELLS)) for i in range(400)]
    assert abs(np.mean(hits) - 1 / E.CELLS**2) < 0.07


@pytest.fixture(scope="module")
def maker(tmp_path_factory):
    path = E.build_base_model(tmp_path_factory.mktemp("emergence") / "m")
    return E.ExampleMaker(load_processor(path), task_size=50)


def test_reading_rows_show_a_random_cell_but_crop_the_target(maker):
    rng = random.Random(1)
    shown_cells = set()
    for i in range(12):
        row = maker.reading(i, rng)
        assert [s.generated for s in row.segments] == [False, False, False, True]  # only the answer is trained
        assert contains(row.info["crop_box"], maker.task[i].target_box)
        shown = maker.tokens.tokenizer.decode(row.segments[1].ids, skip_special_tokens=True)
        shown_cells.add(shown)
        assert row.info["answer"] == maker.task[i].answer
    assert len(shown_cells) > 1  # the shown box does not follow the target


def test_format_and_single_turn_rows_train_only_their_reply(maker):
    rng = random.Random(2)
    box_row = maker.format_row(3, rng)
    assert [s.generated for s in box_row.segments] == [False, True]
    single = maker.single_turn_row(3, rng, true_answer=True)
    assert single.info["correct"] is True and [s.generated for s in single.segments] == [False, True]
    grounding = maker.grounding_row(4)
    assert grounding.info["box_valid"] and contains(grounding.info["crop_box"], maker.grounding[4].target_box)


def test_mgpo_and_grpo_runs_differ_only_in_the_protocol(tmp_path):
    settings = E.RLSettings(steps=10)
    mgpo = E.rl_config(tmp_path, "two_turn", 1, settings, tmp_path / "a").to_dict()
    grpo = E.rl_config(tmp_path, "single_turn", 1, settings, tmp_path / "b").to_dict()
    different = {k for k in mgpo if mgpo[k] != grpo[k]}
    assert different == {"protocol", "output_dir"}


def test_results_table_reports_mean_and_sample_std():
    data = {
        "before": {"two_turn": {"accuracy": 0.25, "hit_rate": 0.1}, "single_turn": {"accuracy": 0.26}},
        "runs": {
            "two_turn": [
                {"seed": s, "evals": [{"step": 5, "accuracy": a, "valid_box_rate": 1.0, "hit_rate": h, "mean_iou": 0.2}], "metrics": []}
                for s, a, h in ((0, 0.5, 0.6), (1, 0.7, 0.8))
            ],
            "single_turn": [{"seed": 0, "evals": [{"step": 5, "accuracy": 0.3, "valid_box_rate": 0.0, "hit_rate": 0.0, "mean_iou": 0.0}], "metrics": []}],
        },
    }
    table = E.results_table(data)
    mgpo = next(line for line in table.splitlines() if line.startswith("| MGPO"))
    assert f"0.600 ± {np.std([0.5, 0.7], ddof=1):.3f}" in mgpo and "| 2 |" in mgpo and "0.700 ± 0.141" in mgpo
    grpo = next(line for line in table.splitlines() if line.startswith("| GRPO"))
    assert "0.300 ± 0.000" in grpo and "no box" in grpo


def test_the_committed_warmstart_checkpoint_loads_and_writes_the_format():
    checkpoint = E.COMMITTED_CHECKPOINT
    assert (checkpoint / "model.safetensors").stat().st_size < 10 * 2**20
    model, processor = E.load_model(checkpoint), E.load_task_processor(checkpoint)
    task = SyntheticTask(8, seed=E.EVAL_SEED, **E.TASK_KWARGS)
    episodes = []
    summary = E.greedy_evaluation(model, processor, lambda: E.make_env(task), range(8), on_episode_end=lambda env, t: episodes.append(t))
    assert len(episodes) == 8 and summary["valid_box_rate"] == 1.0
    assert all(t.info["box_valid"] for t in episodes)  # turn 1: a well-formed cell box
    assert all(t.info["answer"] in "ABCD" for t in episodes)  # turn 2: a letter in \boxed{}
    record = json.loads((checkpoint / "supervised.json").read_text())
    assert record["leak_check"]["view_max_difference"] == 0.0
    # The stage record names the libraries it was made with and the gates its base met.
    assert record["software"]["transformers"] and record["settings"] == asdict(E.StageSettings())
    assert all(record["gates"].values()) and record["base"]["grounding_hit_rate"] >= record["settings"]["grounding_gate"]
    assert 0.0 <= record["base"]["choice_hit_rate"] <= 1.0 and "tilt" in record["warmstart_box_tilt"]


@pytest.mark.parametrize("level", ["bootstrap", "general"])
def test_both_grounding_levels_never_show_the_marker_and_their_cell_box_holds_the_object(level):
    from emergence.grounding_task import GroundingTask

    kwargs = E.GROUNDING_BOOTSTRAP_KWARGS if level == "bootstrap" else E.GROUNDING_KWARGS
    task = GroundingTask(10, seed=9, **kwargs)
    env = E.make_env(task)
    for i in range(10):
        pixels = np.asarray(task[i].image()).reshape(-1, 3)
        assert not (pixels == 0).all(1).any()  # no black anywhere: the task's frame colour
        env.reset(options={"index": i})
        _, _, _, _, info = env.step(E.cell_box_text(*E.cell_of(task[i].target_box)))
        assert contains(info["crop_box"], task[i].target_box)


def test_held_out_gate_questions_are_not_the_training_questions(maker):
    held_task, held_grounding = E.gate_sets(20)
    held_bootstrap, held_choice = E.bootstrap_set(20), E.choice_set(20)
    assert all(len(held_grounding[i].metadata["named_boxes"]) == 1 for i in range(20))  # the gate: one named object
    assert all(len(held_choice[i].metadata["named_boxes"]) == 2 for i in range(20))
    pairs = ((held_task, maker.task), (held_grounding, maker.grounding), (held_bootstrap, maker.bootstrap), (held_choice, maker.grounding))
    for held, trained in pairs:
        trained_boxes = {trained[i].target_box for i in range(len(trained))}
        overlap = sum(held[i].target_box in trained_boxes for i in range(20))
        assert overlap <= 2  # different seeds: at most a chance coincidence of a box, never the same set
        assert held[0].sample_id != trained[0].sample_id


def test_a_finished_stage_is_loaded_from_disk_instead_of_trained_again(tmp_path):
    from mgpo_agents.tiny_model import build_tiny_qwen25vl

    path = build_tiny_qwen25vl(tmp_path / "m")
    processor, model = load_processor(path), E.load_model(path)
    calls = []

    def run():
        calls.append(1)
        return {"curve": [1, 2], "gate": 0.9}

    first: dict = {}
    E._resumable(tmp_path / "stage", ("curve", "gate"), model, processor, first, run)
    again: dict = {}
    reloaded = E._resumable(tmp_path / "stage", ("curve", "gate"), model, processor, again, run)
    assert calls == [1] and again == first == {"curve": [1, 2], "gate": 0.9}
    weights = dict(model.state_dict())
    assert all((reloaded.state_dict()[k] == v).all() for k, v in weights.items())


def test_results_pages_name_the_lanes_a_comparison_ran_in():
    assert [E.lanes_text(n) for n in (1, 2, 3, None)] == ["1 lane", "2 lanes", "3 lanes", "? lanes"]


def test_results_pages_name_checkpoints_relative_to_the_repository(tmp_path):
    inside = E.COMMITTED_CHECKPOINT
    assert E._repository_relative(str(inside)) == "benchmarks/checkpoints/emergence-warmstart"
    assert E._repository_relative(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")  # outside: unchanged


def test_boxed_object_names_the_object_a_box_holds():
    asked, other = (10, 10, 50, 50), (300, 300, 360, 360)
    assert E.boxed_object((0, 0, 100, 100), [asked, other]) == "asked"
    assert E.boxed_object((250, 250, 400, 400), [asked, other]) == "other"
    assert E.boxed_object((0, 0, 400, 400), [asked, other]) == "asked"  # holding both counts as the asked one
    assert E.boxed_object((20, 20, 100, 100), [asked, other]) == "neither"  # cuts the asked object
    assert E.boxed_object(None, [asked, other]) == "neither"  # an invalid box crops nothing


@given(st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_the_cell_box_of_each_named_object_is_classified_as_that_object(index):
    from emergence.grounding_task import GroundingTask

    task = GroundingTask(10_001, seed=5, **E.GROUNDING_KWARGS)
    sample = task[index]
    named = sample.metadata["named_boxes"]
    assert len(named) == E.GROUNDING_KWARGS["objects"] and tuple(map(float, named[0])) == sample.target_boxes[0]
    side = E.CANVAS // E.CELLS
    for k, box in enumerate(named):
        column, row = task.cell_of(box)
        cell = (column * side, row * side, (column + 1) * side, (row + 1) * side)
        assert E.boxed_object(cell, named) == ("asked" if k == 0 else "other")


def test_grounding_choices_agree_with_the_evaluations_hit_rate_and_its_crop_boxes():
    from emergence.grounding_task import GroundingTask

    model, processor = E.load_model(E.COMMITTED_CHECKPOINT), E.load_task_processor(E.COMMITTED_CHECKPOINT)
    task = GroundingTask(12, seed=E.GROUNDING_EVAL_SEED, **E.GROUNDING_KWARGS)
    choices = E.grounding_choices(model, processor, task, range(12))
    assert choices["asked"] + choices["other"] + choices["neither"] == 12
    assert choices["asked"] / 12 == pytest.approx(E.grounding_hit_rate(model, processor, task, range(12)))
    # recount from the crop boxes of the same greedy episodes, with plain geometry
    boxes = {}
    E.greedy_evaluation(model, processor, lambda: E.make_env(task), range(12), on_episode_end=lambda env, t: boxes.update({t.sample_index: t.info.get("crop_box")}))
    present, chosen = {}, {}
    for i, box in boxes.items():
        for named in task[i].metadata["named_boxes"]:
            cell = f"{int(named[0] // (E.CANVAS // E.CELLS))},{int(named[1] // (E.CANVAS // E.CELLS))}"
            present[cell] = present.get(cell, 0) + 1
            held = box is not None and box[0] <= named[0] and box[1] <= named[1] and box[2] >= named[2] and box[3] >= named[3]
            chosen[cell] = chosen.get(cell, 0) + held
    assert choices["chosen_share_by_cell"] == {c: round(chosen[c] / present[c], 3) for c in sorted(present)}


def test_gate_metrics_with_diagnostics_keep_the_gate_figures():
    model, processor = E.load_model(E.COMMITTED_CHECKPOINT), E.load_task_processor(E.COMMITTED_CHECKPOINT)
    plain = E.gate_metrics(model, processor, 6)
    full = E.gate_metrics(model, processor, 6, diagnostics=True)
    assert set(plain) == {"reading_accuracy", "grounding_hit_rate", "choice_hit_rate"}
    assert {k: full[k] for k in plain} == pytest.approx(plain)  # the choice rate read from the choices is the evaluation's
    boxes = full["diagnostics"]["choice_boxes"]
    assert boxes["asked"] + boxes["other"] + boxes["neither"] == 6 and full["choice_hit_rate"] == boxes["asked"] / 6


def test_stage_1b_keeps_the_best_checked_weights_and_reports_its_gates(monkeypatch):
    from types import SimpleNamespace

    settings = E.StageSettings(check_every=100, base_max_steps=300)
    model = torch.nn.Linear(1, 1, bias=False)
    # Per check (reading, grounding); the score min(r / 0.9, g / 0.8) is 0.56, 0.94, 0.67: the second check is best.
    checks = iter([(0.9, 0.45), (0.95, 0.75), (0.6, 0.9)])
    batches_seen = []

    def fake_fit(model_, tokens, batches, *, steps, on_step, **kwargs):
        for step in range(steps):
            batches_seen.append(batches(step))
            with torch.no_grad():
                model_.weight.fill_(float(step + 1))  # the weights "at" each step
            if on_step(step, 0.1):
                break

    def measure(label):
        reading, grounding = next(checks)
        return {"reading_accuracy": reading, "grounding_hit_rate": grounding}

    monkeypatch.setattr(E, "fit", fake_fit)
    maker = SimpleNamespace(tokens=SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=0)))
    record = E._base_stage(model, maker, ["reading"] * 40, ["general"] * 40, ["bootstrap"] * 40, measure, settings, 0, False)
    assert [row["step"] for row in record["base_curve"]] == [100, 200, 300]
    assert record["base"]["step"] == 200 and model.weight.item() == 200.0  # the best check's weights, not the last
    assert record["gates"] == {"reading_accuracy>=0.9": True, "grounding_hit_rate>=0.8": False}
    assert len(batches_seen) == 300 and all(len(batch) == settings.batch for batch in batches_seen)
    assert sorted(batches_seen[0]) == sorted(["reading"] * 16 + ["general"] * 8 + ["bootstrap"] * 8)


def test_the_software_record_names_the_libraries_and_threads_in_use():
    import PIL
    import transformers

    record = E.software_record()
    assert record["torch"] == torch.__version__ and record["transformers"] == transformers.__version__
    assert record["numpy"] == np.__version__ and record["pillow"] == PIL.__version__
    assert record["torch_threads"] == torch.get_num_threads()
    json.dumps(record)  # it goes into the JSON stage records as is


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 9), st.integers(0, 2**31 - 1))
def test_box_tilt_is_zero_for_a_blind_policy_and_its_baseline_is_the_mean_over_all_pairings(questions, seed):
    rng = np.random.default_rng(seed)
    cells = E.CELLS * E.CELLS
    probabilities = rng.random((questions, cells)) + 1e-3
    targets = rng.integers(0, cells, size=questions)
    tilt = E.box_tilt(probabilities, targets)
    q = probabilities / probabilities.sum(1, keepdims=True)
    # Independently: pair every question's distribution with every question's target.
    assert tilt["p_target_if_blind"] == pytest.approx(float(q[:, targets].mean()), abs=1e-4)
    assert tilt["p_target"] == pytest.approx(float(np.mean([q[i, t] for i, t in enumerate(targets)])), abs=1e-4)
    # The mass on the cell boxes does not change the lean: rescale each row.
    rescaled = E.box_tilt(probabilities * rng.uniform(0.1, 1.0, size=(questions, 1)), targets)
    assert rescaled["tilt"] == pytest.approx(tilt["tilt"], abs=2e-4)
    blind = E.box_tilt(np.tile(probabilities[:1], (questions, 1)), targets)
    assert blind["tilt"] == pytest.approx(0.0, abs=1e-4) and blind["image_dependence"] == pytest.approx(0.0, abs=1e-4)


def test_turn1_cell_probabilities_match_a_full_forward_pass_of_each_box():
    from mgpo_agents.supervised import scripted_trajectory
    from mgpo_agents.trajectory import ConversationTokenizer, model_inputs

    model, processor = E.load_model(E.COMMITTED_CHECKPOINT), E.load_task_processor(E.COMMITTED_CHECKPOINT)
    task = SyntheticTask(3, seed=E.EVAL_SEED, **E.TASK_KWARGS)
    probabilities = E.turn1_cell_probabilities(model, processor, task, [0, 2])
    tokens, env = ConversationTokenizer(processor), E.make_env(task)
    for row, index in enumerate([0, 2]):
        for cell in range(E.CELLS * E.CELLS):
            t = scripted_trajectory(tokens, env, index, [E.cell_box_text(cell % E.CELLS, cell // E.CELLS)], train_turns=[0])
            reply = t.segments[-1].ids
            with torch.no_grad():
                logits = model(**model_inputs([t], processor.tokenizer.pad_token_id, tokens.image_token_id, left_pad=False)).logits[0]
            log_probs = torch.log_softmax(logits.float(), -1)
            start = len(t.input_ids) - len(reply)
            expected = float(sum(log_probs[start + k - 1, token] for k, token in enumerate(reply)))
            assert probabilities[row, cell] == pytest.approx(np.exp(expected), rel=1e-4)
    assert (probabilities.sum(1) <= 1 + 1e-5).all()


def test_the_cell_preset_trains_this_task_from_the_committed_checkpoint():
    """The "emergence" preset (`make run` before the free-form task) follows the cell experiment: same task, checkpoint and held-out seed."""
    from mgpo_agents.config import preset

    config = preset("emergence")
    assert (E.REPOSITORY_ROOT / config.model).resolve() == E.COMMITTED_CHECKPOINT.resolve()
    assert config.dataset_kwargs == {"num_samples": 2000, "seed": E.TRAIN_SEED, **E.TASK_KWARGS}
    assert config.eval_dataset_kwargs == {"num_samples": 200, "seed": E.EVAL_SEED, **E.TASK_KWARGS}
    assert E.TRAIN_SEED != E.EVAL_SEED
    assert (config.min_pixels, config.max_pixels, config.env_kwargs) == (E.MIN_PIXELS, E.MAX_PIXELS, E.ENV_KWARGS)
    methods = {p: E.rl_config(E.COMMITTED_CHECKPOINT, p, 0, E.RLSettings(), E.REPOSITORY_ROOT / "unused").to_dict() for p in E.METHODS}
    for field in ("group_size", "prompts_per_step", "max_new_tokens", "kl_coef", "box_frame", "dataset_kwargs"):
        assert methods["two_turn"][field] == config.to_dict()[field], field
