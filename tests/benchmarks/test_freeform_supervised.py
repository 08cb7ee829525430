"""The free-form task's base-ability rows and their geometry (benchmarks/emergence/freeform_supervised.py)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emergence.freeform_supervised import CANVAS, VIEW, FreeformRows, grown_box
from mgpo_env.box_parser import parse_box
from mgpo_env.geometry import BoxPolicy, contains, original_to_view, validate_box


@settings(max_examples=300, deadline=None)
@given(x=st.integers(0, 300), y=st.integers(0, 300), w=st.integers(29, 308), h=st.integers(29, 308), factor=st.floats(1.0, 3.0))
def test_a_grown_box_holds_the_box_stays_in_the_view_and_has_the_asked_size(x, y, w, h, factor):
    box = (min(x, 308 - w), min(y, 308 - h), min(x, 308 - w) + w, min(y, 308 - h) + h)
    grown = grown_box(box, factor, (308, 308))
    assert 0 <= grown[0] < grown[2] <= 308 and 0 <= grown[1] < grown[3] <= 308
    assert contains(grown, box)
    for side, new in ((w, grown[2] - grown[0]), (h, grown[3] - grown[1])):
        assert min(308, side * factor) - 1e-9 <= new <= min(308, side * factor + 2)


def test_the_view_is_the_128_token_view():
    assert VIEW == (308, 308) and CANVAS == 2240


@pytest.fixture(scope="module")
def rows():
    from emergence.experiment import COMMITTED_CHECKPOINT
    from emergence.position_code import load_task_processor

    made = FreeformRows(load_task_processor(COMMITTED_CHECKPOINT), pool=40, reading_most=1.8, grounding_margin=1.15, seed=3)
    made.set_level(0)
    return made


def _images(trajectory):
    return [grid[0].tolist() for grid in trajectory.image_grid_thw]


def test_a_reading_row_crops_around_the_target_but_shows_an_unrelated_box_and_trains_the_answer_only(rows):
    shown_elsewhere = 0
    for index in range(12):
        t = rows.reading(index)
        sample = rows.level_env.unwrapped.dataset[index]
        assert contains(t.info["crop_box"], sample.target_boxes[0])  # the environment acted on a crop that holds the target
        shown = parse_box(t.replies[0]).coords
        assert validate_box(shown, VIEW, BoxPolicy())[0] is not None
        target_in_view = original_to_view(sample.target_boxes[0], VIEW, (CANVAS, CANVAS))
        shown_elsewhere += not contains(shown, target_in_view)
        assert [s.generated for s in t.segments] == [False, False, False, True]
        assert t.replies[1] == "\\boxed{" + sample.answer_text + "}" and t.info["correct"]
        view, crop = _images(t)
        assert view == [1, 22, 22] and crop[1] * crop[2] <= 22 * 22  # both images within 128 tokens (2x2 patches merged)
    assert shown_elsewhere >= 8  # the shown box is random: it rarely holds the target


def test_a_grounding_row_boxes_the_named_shape_with_a_valid_box(rows):
    for index in range(12):
        t = rows.grounding(index)
        sample = rows.grounding_env.unwrapped.dataset[index]
        box = parse_box(t.replies[0]).coords
        assert validate_box(box, VIEW, BoxPolicy())[0] is not None
        assert contains(box, original_to_view(sample.target_boxes[0], VIEW, (CANVAS, CANVAS)))
        assert [s.generated for s in t.segments] == [False, True]
        assert "frame" not in sample.question and "checker" not in sample.question


def test_a_guessing_row_crops_the_random_box_it_shows(rows):
    misses = 0
    for index in range(12):
        t = rows.guessing(index)
        shown = parse_box(t.replies[0]).coords
        assert t.info["box_valid"]
        assert [round(v) for v in original_to_view(t.info["crop_box"], VIEW, (CANVAS, CANVAS))] == [round(v) for v in shown]
        assert [s.generated for s in t.segments] == [False, False, False, True]
        misses += not contains(t.info["crop_box"], rows.task_env.unwrapped.dataset[index].target_boxes[0])
    assert misses >= 8


def test_the_base_curves_follow_the_log_and_leave_gaps_where_a_check_lacks_a_value(tmp_path):
    from emergence.freeform_supervised import base_curves, plot_base_log

    log = [
        {"step": 0, "level": 0, "read_smallest": {"colour": 0.3, "checker_half": 0.2}, "read_smallest_at_level": {"colour": 0.5},
         "grounding": {"mean_iou": 0.0, "valid_box_rate": 0.1}, "task_turn1": {"tight_hit_rate": 0.0}, "level_moved": True},
        {"step": 50, "level": 1, "read_smallest": {"colour": 0.6, "checker_half": 0.4}, "grounding": {"mean_iou": 0.2, "valid_box_rate": 0.5},
         "task_turn1": {"tight_hit_rate": 0.1}, "read_1.6x_at_level": {"colour": 0.7}},
    ]
    curves = base_curves(log)
    assert curves["step"] == [0, 50] and curves["level"] == [0, 1]
    assert curves["reading colour, smallest box"] == [0.3, 0.6] and curves["reading checker_half, smallest box"] == [0.2, 0.4]
    assert curves["reading colour, smallest box, current level"] == [0.5, None]
    assert curves["reading colour, 1.6x box, current level"] == [None, 0.7]  # a run gated on a wider box (gate_ratio)
    assert curves["grounding mean iou"] == [0.0, 0.2] and curves["task turn 1 tight hit rate"] == [0.0, 0.1]
    assert curves["task turn 1 mean iou"] == [None, None]
    assert plot_base_log(log, tmp_path / "curves.png").stat().st_size > 10_000


def test_a_stage_resumes_only_with_its_own_weights_and_settings(tmp_path):
    import json
    from dataclasses import asdict

    from emergence.freeform_supervised import FreeformBaseSettings, resume_conflict

    (tmp_path / "w").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "w")
    stored = FreeformBaseSettings(steps=100, learning_rate=3e-4, threads=2)
    (tmp_path / "settings.json").write_text(json.dumps({**asdict(stored), "init": str(tmp_path / "w")}))
    same = FreeformBaseSettings(steps=100, learning_rate=3e-4, threads=1)
    assert resume_conflict(tmp_path, tmp_path / "link", same, last_step=50) is None  # the same folder by another name, other threads
    assert resume_conflict(tmp_path, tmp_path / "w", FreeformBaseSettings(steps=300, learning_rate=3e-4), last_step=100) is None  # longer
    assert "started from" in resume_conflict(tmp_path, tmp_path / "other", same, last_step=50)
    assert resume_conflict(tmp_path, tmp_path / "w", FreeformBaseSettings(steps=100, learning_rate=5e-4), 50) == "its learning_rate was 0.0003, not 0.0005"
    assert "more than the 40 asked" in resume_conflict(tmp_path, tmp_path / "w", FreeformBaseSettings(steps=40, learning_rate=3e-4), last_step=50)


@pytest.mark.slow
def test_easy_grounding_rows_have_no_clutter_and_the_shape_sizes_asked():
    import numpy as np

    from emergence.experiment import COMMITTED_CHECKPOINT
    from emergence.position_code import load_task_processor
    from mgpo_datasets.synthetic import FRAME_COLOURS

    made = FreeformRows(load_task_processor(COMMITTED_CHECKPOINT), pool=20, reading_most=1.2, grounding_margin=1.15, seed=1,
                        grounding_clutter=0, grounding_sizes=[300, 500])
    dataset = made.grounding_env.unwrapped.dataset
    for i in range(3):
        sample = dataset[i]
        x1, y1, x2, y2 = sample.target_boxes[0]
        assert 300 * 0.5 <= max(x2 - x1, y2 - y1) <= 500  # shape_box is the drawn shape's own extent within its square
        pixels = np.asarray(sample.image())
        outside = np.ones(pixels.shape[:2], bool)
        outside[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))] = False
        colours = {tuple(c) for c in np.unique(pixels[outside].reshape(-1, 3), axis=0)}
        assert colours <= {tuple(pixels[0, 0]), FRAME_COLOURS[sample.answer.split()[0]]}  # background, and the shape's own edge
    cluttered = FreeformRows(made.tokens.processor, pool=20, reading_most=1.2, grounding_margin=1.15, seed=1).grounding_env.unwrapped.dataset
    assert len(np.unique(np.asarray(cluttered[0].image()).reshape(-1, 3), axis=0)) > 2  # the default canvases do have clutter


def test_the_curves_show_grounding_on_a_stages_own_canvases_only_where_it_was_measured():
    from emergence.freeform_supervised import base_curves

    log = [{"step": 0, "level": 0, "grounding": {"mean_iou": 0.1}, "grounding_rows_canvas": {"mean_iou": 0.3}},
           {"step": 50, "level": 0, "grounding": {"mean_iou": 0.2}}]
    curves = base_curves(log)
    assert curves["grounding mean iou"] == [0.1, 0.2] and curves["grounding, stage's canvases, mean iou"] == [0.3, None]
    assert not any("stage's canvases" in k for k in base_curves(log[1:]))
