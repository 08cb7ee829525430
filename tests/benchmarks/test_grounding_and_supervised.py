"""Pieces of the miniature experiment: cell-placed targets, generic grounding data, the
position-coded image processor, prompt overrides, scripted (supervised) episodes and forced replies."""


import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import emergence  # noqa: F401  (registers the "grounding" dataset)
import mgpo_env  # noqa: F401
from emergence.forced_replies import ForcedReplies
from emergence.grounding_task import NAMED_COLOURS, GroundingTask
from emergence.position_code import PositionCodedImageProcessor, load_task_processor, position_code_features
from mgpo_agents.qwen_processor import load_model, load_processor
from mgpo_agents.rollout import RolloutEngine
from mgpo_agents.supervised import fit, reply_ids, scripted_trajectory
from mgpo_agents.tiny_model import QWEN25VL_IMAGE_SETTINGS, build_tiny_qwen25vl
from mgpo_agents.trajectory import ConversationTokenizer, template_drift
from mgpo_env.templates import PromptTemplates
from mgpo_datasets.synthetic import COLOUR_PAIRS, SyntheticTask

CELL_TASK = dict(canvas_size=1792, target_size=128, grid=8, checker_square=4, clutter=10, cells=4, question_types=["colour"], shuffle_choices=False)


# ------------------------------------------------------------------ synthetic task knobs
@settings(max_examples=40, deadline=None)
@given(index=st.integers(0, 499), cells=st.sampled_from([2, 3, 4]), seed=st.integers(0, 5))
def test_cell_placed_targets_lie_inside_one_cell(index, cells, seed):
    task = SyntheticTask(500, seed=seed, **{**CELL_TASK, "cells": cells})
    x1, y1, x2, y2 = task[index].target_box
    side = 1792 // cells
    assert x1 // side == (x2 - 1) // side and y1 // side == (y2 - 1) // side
    assert x1 % 8 == 0 and y1 % 8 == 0  # aligned to the grid, so the checker stays hidden in the view


def test_unshuffled_choices_keep_one_letter_per_attribute():
    task = SyntheticTask(200, seed=0, **CELL_TASK)
    order = list(COLOUR_PAIRS)
    for i in range(200):
        sample = task[i]
        assert list(sample.choices) == order
        assert sample.answer == "ABCD"[order.index(sample.metadata["attribute"])]


def test_cells_too_small_for_the_target_are_refused():
    with pytest.raises(ValueError, match="cells"):
        SyntheticTask(10, canvas_size=1024, target_size=200, cells=8)


# ---------------------------------------------------------------------- grounding data
def test_grounding_questions_name_an_object_that_lies_in_its_box():
    task = GroundingTask(12, seed=4, canvas_size=896, cells=4, object_size=(64, 160), objects=3, clutter=10)
    for i in range(12):
        sample = task[i]
        colour, shape = sample.answer.split()
        assert sample.question == f"Where is the {colour} {shape}?"
        image = np.asarray(sample.image())
        x1, y1, x2, y2 = (int(v) for v in sample.target_box)
        inside = image[y1:y2, x1:x2].reshape(-1, 3)
        # The named colour fills a good part of the box (every shape covers at least ~1/4 of it).
        assert (np.abs(inside - np.array(NAMED_COLOURS[colour])).sum(1) == 0).mean() > 0.2
        assert task.cell_of(sample.target_box) == sample.metadata["cell"]


def test_grounding_images_never_show_the_task_marker():
    task = GroundingTask(20, seed=1, canvas_size=896, cells=4, object_size=(64, 160))
    for i in range(20):
        image = np.asarray(task[i].image()).reshape(-1, 3)
        assert not (image == 0).all(1).any()  # no black: the task's frame colour


def test_grounding_is_deterministic_and_validated():
    a, b = GroundingTask(3, seed=2, canvas_size=896), GroundingTask(3, seed=2, canvas_size=896)
    assert np.array_equal(np.asarray(a[1].image()), np.asarray(b[1].image()))
    with pytest.raises(ValueError, match="object_size"):
        GroundingTask(3, canvas_size=896, cells=4, object_size=(64, 400))
    env = gym.make("mgpo/HighResVQA-v0", dataset="grounding", dataset_kwargs={"num_samples": 2, "canvas_size": 896})
    _, info = env.reset(options={"index": 0})
    assert info["category"] == "grounding" and info["target_box"] is not None


# -------------------------------------------------------------- position-coded processor
def _pixels(processor, image):
    return processor(images=[image], return_tensors="np")["pixel_values"].reshape(-1, 3, 2, 14 * 14)


def test_position_code_lives_only_in_the_frame_difference():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (112, 168, 3), dtype=np.uint8))
    plain = _pixels(PositionCodedImageProcessor(position_code=0.0, **QWEN25VL_IMAGE_SETTINGS), image)
    coded = _pixels(PositionCodedImageProcessor(position_code=3.0, **QWEN25VL_IMAGE_SETTINGS), image)
    np.testing.assert_allclose(coded.mean(2), plain.mean(2), atol=1e-5)  # the image itself is untouched
    difference = (coded[:, 0, 0] - coded[:, 0, 1]) / 2
    # Independent computation for patch (row 3, column 9) of the 8 x 12 patch grid.
    row, col, grid_h, grid_w = 3, 9, 8, 12
    index = ((row // 2) * (grid_w // 2) + col // 2) * 4 + (row % 2) * 2 + col % 2
    u, v = (col + 0.5) / grid_w, (row + 0.5) / grid_h
    k = np.arange(1, 5)
    expected = 3.0 * np.concatenate([np.sin(np.pi * k * u), np.cos(np.pi * k * u), np.sin(np.pi * k * v), np.cos(np.pi * k * v)])
    np.testing.assert_allclose(difference[index, :16], expected, atol=1e-5)
    assert np.abs(difference[:, 16:]).max() < 1e-6
    assert position_code_features(grid_h, grid_w, 2).shape == (96, 16)


def test_position_code_survives_save_and_load(tmp_path):
    path = build_tiny_qwen25vl(tmp_path / "m")
    processor = load_processor(path)
    processor.image_processor = PositionCodedImageProcessor(position_code=2.0, **QWEN25VL_IMAGE_SETTINGS)
    processor.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    again = load_task_processor(path)
    assert isinstance(again.image_processor, PositionCodedImageProcessor) and again.image_processor.position_code == 2.0
    # A trainer checkpoint saves the processor alone (no preprocessor_config.json): the code must survive that too.
    checkpoint = tmp_path / "checkpoint"
    again.save_pretrained(checkpoint)
    assert not (checkpoint / "preprocessor_config.json").exists()
    reloaded = load_task_processor(checkpoint)
    assert isinstance(reloaded.image_processor, PositionCodedImageProcessor) and reloaded.image_processor.position_code == 2.0


# ------------------------------------------------------------------- environment knobs
def test_template_overrides_from_a_dict_and_unknown_names_refused():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512}, templates={"user_grounding": "Q: {question}"})
    obs, _ = env.reset(options={"index": 0})
    assert obs["history"][-1]["content"].endswith("Q: " + env.unwrapped.sample.question)
    with pytest.raises(ValueError, match="unknown template field"):
        PromptTemplates.with_overrides({"user_groundin": "x"})


@pytest.mark.parametrize("after", [False, True])
def test_image_after_text_orders_every_user_message(after):
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512}, image_after_text=after, min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    env.reset(options={"index": 0})
    env.step("[0,0,100,100]")
    users = [m for m in env.unwrapped.chat_messages() if m["role"] == "user"]
    assert len(users) == 2
    for message in users:
        kinds = [part["type"] for part in message["content"]]
        assert kinds == (["text", "image"] if after else ["image", "text"])


# ------------------------------------------------------------ scripted episodes and SFT
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "m")
    return path, load_processor(path)


def _env(**kwargs):
    return gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 4, "canvas_size": 896, "target_size": 64}, min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28, **kwargs)


def test_scripted_trajectory_is_token_exact_and_masks_chosen_turns(tiny):
    _, processor = tiny
    tokens = ConversationTokenizer(processor)
    env = _env()
    trajectory = scripted_trajectory(tokens, env, 1, ["[0,0,112,112]", "\\boxed{C}"], train_turns=[1])
    assert [s.generated for s in trajectory.segments] == [False, False, False, True]
    assert trajectory.segments[3].ids == reply_ids(tokens, "\\boxed{C}")
    assert template_drift(trajectory, tokens.full_conversation_ids(env.unwrapped.chat_messages())) == 0
    assert len(trajectory.pixel_values) == 2 and trajectory.info["answer"] == "C"


def test_shown_reply_replaces_the_ids_but_not_the_action(tiny):
    _, processor = tiny
    tokens = ConversationTokenizer(processor)
    env = _env()
    acted = scripted_trajectory(tokens, env, 0, ["[0,0,112,112]", "\\boxed{A}"], train_turns=[1])
    shown = scripted_trajectory(tokens, env, 0, ["[0,0,112,112]", "\\boxed{A}"], train_turns=[1], shown_replies=["[112,112,224,224]", None])
    assert shown.segments[1].ids == reply_ids(tokens, "[112,112,224,224]") != acted.segments[1].ids
    assert torch.equal(shown.pixel_values[1], acted.pixel_values[1])  # the same crop: the env acted on the first box
    assert shown.info["crop_box"] == acted.info["crop_box"] == (0, 0, 448, 448)
    with pytest.raises(ValueError, match="ended"):
        scripted_trajectory(tokens, _env(protocol="single_turn"), 0, ["\\boxed{A}", "more"], train_turns=[0])


def test_fit_memorises_a_small_batch(tiny):
    path, processor = tiny
    torch.manual_seed(0)
    model = load_model(path)
    tokens = ConversationTokenizer(processor)
    env = _env(protocol="single_turn")
    batch = [scripted_trajectory(tokens, env, i, [f"\\boxed{{{'ABCD'[i]}}}"], train_turns=[0]) for i in range(4)]
    losses = fit(model, tokens, lambda step: batch, steps=25, learning_rate=3e-3, pad_id=processor.tokenizer.pad_token_id, progress=False)
    assert losses[-1] < 0.25 * losses[0]


def test_forced_replies_make_greedy_generation_say_the_given_text(tiny):
    path, processor = tiny
    model = load_model(path)
    tokens = ConversationTokenizer(processor)
    forced_text = "[0,0,224,224]"

    def forcing(trajectories, turn):
        if turn:
            return []
        width = max(len(t.input_ids) for t in trajectories)
        return [ForcedReplies([reply_ids(tokens, forced_text), None], width)]

    engine = RolloutEngine(model, processor, _env, max_new_tokens=20, extra_logits_processors=forcing)
    result = engine.run([0, 1], group_size=1, greedy=True)
    assert result.trajectories[0].replies[0] == forced_text
    assert result.trajectories[0].segments[1].ids == reply_ids(tokens, forced_text)
    assert result.trajectories[0].info["crop_box"] is not None


def test_fit_stops_when_the_gate_says_so_and_keeps_a_constant_rate(tiny):
    """A gated stage: on_step returning True ends training after that step; "constant" keeps the rate flat."""
    path, processor = tiny
    model = load_model(path)
    tokens = ConversationTokenizer(processor)
    env = _env(protocol="single_turn")
    batch = [scripted_trajectory(tokens, env, 0, ["\\boxed{A}"], train_turns=[0])]
    seen_rates: list[float] = []
    original_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        seen_rates.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = recording_step
    try:
        losses = fit(model, tokens, lambda step: batch, steps=50, learning_rate=1e-3, pad_id=processor.tokenizer.pad_token_id,
                     warmup_steps=2, schedule="constant", on_step=lambda step, loss: step == 6, progress=False)
    finally:
        torch.optim.AdamW.step = original_step
    assert len(losses) == 7  # steps 0..6, then the gate stopped it
    assert seen_rates == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="schedule"):
        fit(model, tokens, lambda step: batch, steps=1, learning_rate=1e-3, pad_id=0, schedule="linear", progress=False)
