"""Parts of the miniature experiment (the ``emergence`` package under ``benchmarks/``):
generic grounding data, the position-coded image processor, and forced replies."""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import emergence  # noqa: F401  (registers the "grounding" dataset)
import mgpo_env  # noqa: F401
from emergence.forced_replies import ForcedReplies
from emergence.grounding_task import GROUNDING_PHRASINGS, NAMED_COLOURS, GroundingTask, TaskCanvasGrounding
from emergence.position_code import PositionCodedImageProcessor, load_task_processor, position_code_features
from mgpo_agents.qwen_processor import load_model, load_processor
from mgpo_agents.rollout import RolloutEngine
from mgpo_agents.supervised import reply_ids
from mgpo_agents.tiny_model import QWEN25VL_IMAGE_SETTINGS, build_tiny_qwen25vl
from mgpo_agents.trajectory import ConversationTokenizer


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


CANVAS_TASK = dict(canvas_size=1120, target_sizes=(112, 144), frame_colours=("red", "blue"), clutter=20)


@settings(max_examples=12, deadline=None)
@given(index=st.integers(0, 99), seed=st.integers(0, 3))
def test_task_canvas_grounding_boxes_the_only_saturated_object_tightly(index, seed):
    sample = TaskCanvasGrounding(100, seed=seed, task=CANVAS_TASK, object_size=(60, 200))[index]
    colour, shape = sample.answer.split()
    assert sample.question in {p.format(colour=colour, shape=shape) for p in GROUNDING_PHRASINGS}
    image = np.asarray(sample.image(), dtype=int)
    ys, xs = np.nonzero((image == np.array(NAMED_COLOURS[colour])).all(axis=2))
    x1, y1, x2, y2 = sample.target_boxes[0]
    # PIL fills the shape's last row and column too, so the drawn pixels reach one past the box.
    assert abs(xs.min() - x1) <= 1 and abs(ys.min() - y1) <= 1 and abs(xs.max() + 1 - x2) <= 1 and abs(ys.max() + 1 - y2) <= 1
    spread = image.max(axis=2) - image.min(axis=2)
    ys, xs = np.nonzero(spread >= 100)  # saturated pixels: the named shape's only (every named colour spreads 130+)
    assert xs.min() >= x1 - 1 and xs.max() <= x2 and ys.min() >= y1 - 1 and ys.max() <= y2
    assert not (image == 0).all(axis=2).any()


def test_task_canvas_grounding_is_deterministic_and_validated():
    a, b = TaskCanvasGrounding(3, seed=5, task=CANVAS_TASK), TaskCanvasGrounding(3, seed=5, task=CANVAS_TASK)
    assert a[2].question == b[2].question and np.array_equal(np.asarray(a[2].image()), np.asarray(b[2].image()))
    assert not any(word in p for p in GROUNDING_PHRASINGS for word in ("frame", "checker", "pattern"))
    with pytest.raises(ValueError, match="frame_colours"):
        TaskCanvasGrounding(3, task={**CANVAS_TASK, "frame_colours": ()})
    with pytest.raises(ValueError, match="object_size"):
        TaskCanvasGrounding(3, task=CANVAS_TASK, object_size=(60, 700))
    with pytest.raises(ValueError, match="phrasings"):
        TaskCanvasGrounding(3, task=CANVAS_TASK, phrasings=("Where is it?",))


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


# ------------------------------------------------------------------ forced replies
def test_forced_replies_make_greedy_generation_say_the_given_text(tmp_path):
    path = build_tiny_qwen25vl(tmp_path / "m")
    processor, model = load_processor(path), load_model(path)
    tokens = ConversationTokenizer(processor)
    forced_text = "[0,0,224,224]"

    def forcing(trajectories, turn):
        if turn:
            return []
        width = max(len(t.input_ids) for t in trajectories)
        return [ForcedReplies([reply_ids(tokens, forced_text), None], width)]

    def make_env():
        return gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 4, "canvas_size": 896, "target_size": 64},
                        min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)

    engine = RolloutEngine(model, processor, make_env, max_new_tokens=20, extra_logits_processors=forcing)
    result = engine.run([0, 1], group_size=1, greedy=True)
    assert result.trajectories[0].replies[0] == forced_text
    assert result.trajectories[0].segments[1].ids == reply_ids(tokens, forced_text)
    assert result.trajectories[0].info["crop_box"] is not None
