"""The built-in synthetic task: determinism, balance, the hidden-in-the-view property, and cell-placed targets."""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgpo_env.image_budget import ImageBudget, resize_to_budget
from mgpo_datasets.synthetic import COLOUR_PAIRS, SyntheticTask, render_layout

# Knobs the emergence experiment (benchmarks/emergence) uses: each target inside one of cells x cells cells, options in a fixed order.
CELL_TASK = dict(canvas_size=1792, target_size=128, grid=8, checker_square=4, clutter=10, cells=4, question_types=["colour"], shuffle_choices=False)


def test_samples_are_deterministic_and_depend_on_the_seed():
    a, b, c = SyntheticTask(num_samples=5, seed=1), SyntheticTask(num_samples=5, seed=1), SyntheticTask(num_samples=5, seed=2)
    for i in range(5):
        assert a[i].question == b[i].question and a[i].choices == b[i].choices and a[i].target_boxes == b[i].target_boxes
    assert np.array_equal(np.asarray(a[0].image()), np.asarray(b[0].image()))
    assert [a[i].target_boxes for i in range(5)] != [c[i].target_boxes for i in range(5)]


def test_answers_and_types_are_balanced():
    task = SyntheticTask(num_samples=400, seed=0)
    samples = [task[i] for i in range(400)]
    kinds = Counter(s.category for s in samples)
    assert set(kinds) == {"colour", "glyph", "shape", "relative_position"} and min(kinds.values()) > 60
    letters = Counter(s.answer for s in samples if s.category != "relative_position")
    assert min(letters[letter] for letter in "ABCD") > 40
    for s in samples:
        assert s.answer_text == s.metadata["attribute"]
        assert len(set(s.choices)) == len(s.choices)


def test_default_canvas_is_large_and_boxes_lie_inside():
    task = SyntheticTask(num_samples=30)
    for i in range(30):
        sample = task[i]
        assert max(task.canvas_size) >= 2048
        for x1, y1, x2, y2 in sample.target_boxes:
            assert 0 <= x1 < x2 <= task.canvas_size[0] and 0 <= y1 < y2 <= task.canvas_size[1]


def _colour_sample(task, wanted_pair):
    for i in range(len(task)):
        s = task[i]
        if s.category == "colour" and s.metadata["attribute"] == wanted_pair:
            return i, s
    raise AssertionError("no such sample")


def test_checker_colour_is_invisible_in_the_default_view_and_visible_in_a_crop():
    """Render one layout with each colour pair: the shrunk views must be pixel-identical."""
    task = SyntheticTask(num_samples=40, seed=3, question_types=("colour",))
    budget = ImageBudget()
    _, sample = _colour_sample(task, task[0].metadata["attribute"])
    layout = sample.image.layout
    views, crops = [], []
    for pair in COLOUR_PAIRS:
        image = render_layout(task, replace(layout, answer_value=pair))
        views.append(np.asarray(resize_to_budget(image, budget)).astype(int))
        x1, y1, x2, y2 = (int(v) for v in sample.target_boxes[0])
        crops.append(np.asarray(resize_to_budget(image.crop((x1 - 40, y1 - 40, x2 + 40, y2 + 40)), budget)).astype(int))
    assert views[0].shape == (980, 980, 3)
    for other in views[1:]:
        assert np.abs(other - views[0]).max() == 0  # no information at all in the view
    for i in range(len(crops)):
        for j in range(i + 1, len(crops)):
            assert np.abs(crops[i] - crops[j]).max() > 200  # the crops differ plainly


def test_glyphs_are_a_smudge_in_the_view_but_readable_in_a_crop():
    task = SyntheticTask(num_samples=40, seed=0, question_types=("glyph",))
    sample = task[0]
    layout = sample.image.layout
    x1, y1, x2, y2 = (int(v) for v in sample.target_boxes[0])
    renders = {letter: render_layout(task, replace(layout, answer_value=letter)) for letter in ("E", "H")}
    view = {k: np.asarray(resize_to_budget(v)).astype(int)[y1 // 4 : y2 // 4, x1 // 4 : x2 // 4] for k, v in renders.items()}
    crop = {k: np.asarray(resize_to_budget(v.crop((x1 - 40, y1 - 40, x2 + 40, y2 + 40)))).astype(int) for k, v in renders.items()}
    # The letters differ in far more pixels, and far more strongly, after cropping.
    changed_view = (np.abs(view["E"] - view["H"]).max(axis=2) > 60).sum()
    changed_crop = (np.abs(crop["E"] - crop["H"]).max(axis=2) > 60).sum()
    assert changed_crop > 50 * max(1, changed_view)


def test_describe_scales_reports_the_view_factor():
    scales = SyntheticTask().describe_scales(ImageBudget())
    assert scales["view"] == (980, 980) and scales["view_downsampling"] == 4.0
    assert scales["checker_hidden_in_view"] is True
    assert scales["checker_square_px"]["view"] == 0.5 and scales["checker_square_px"]["tight_crop"] >= 8


def test_index_of_and_bad_indices():
    task = SyntheticTask(num_samples=3, seed=7)
    assert task.index_of("synthetic-7-2") == 2
    with pytest.raises(KeyError):
        task.index_of("synthetic-7-3")
    with pytest.raises(IndexError):
        task[3]


@pytest.mark.parametrize("kwargs", [{"canvas_size": 100}, {"num_samples": 0}, {"question_types": ("smell",)}, {"num_choices": 5}, {"target_size": 2}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticTask(**kwargs)


# --------------------------------------------- cell-placed targets, unshuffled choices
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


# ------------------------------- noisy fine checkers: targets of several sizes, the checker_half question
NOISY_TASK = dict(canvas_size=1568, target_sizes=(224, 288), grid=4, checker_square=1, clutter=10, question_types=["colour", "checker_half"])


def _inside(task, sample):
    x1, y1, x2, y2 = (int(v) for v in sample.target_boxes[0])
    g = task.grid
    return np.asarray(sample.image(), dtype=int)[y1 + g:y2 - g, x1 + g:x2 - g]


def test_one_size_in_target_sizes_gives_the_samples_of_target_size():
    a, b = SyntheticTask(6, seed=3, target_size=64), SyntheticTask(6, seed=3, target_sizes=(64,))
    for i in range(6):
        assert (a[i].question, a[i].choices, a[i].target_boxes) == (b[i].question, b[i].choices, b[i].target_boxes)


def test_targets_take_each_listed_size():
    task = SyntheticTask(60, seed=0, **NOISY_TASK, pattern_amplitude=40)
    sides = Counter(int(s.target_boxes[0][2] - s.target_boxes[0][0]) for s in (task[i] for i in range(60)))
    assert set(sides) == {224, 288} and min(sides.values()) > 15


@settings(max_examples=12, deadline=None)
@given(amplitude=st.integers(1, 127), index=st.integers(0, 40))
def test_checker_colours_sit_at_128_plus_minus_the_amplitude_along_the_pair(amplitude, index):
    from mgpo_datasets.synthetic import PAIR_DIRECTIONS

    task = SyntheticTask(41, seed=4, **NOISY_TASK, pattern_amplitude=amplitude)
    sample = task[index]
    inside = _inside(task, sample)
    if sample.category == "colour":
        checker = inside
        pair = sample.metadata["attribute"]
    else:  # checker_half: the named half holds the checker, the other half is flat gray 128
        h, w = inside.shape[:2]
        half = sample.metadata["attribute"]
        # The half-box is split at the inside's middle, so compare away from the seam.
        sl = {"top": np.s_[: h // 2 - 1], "bottom": np.s_[h // 2 + 1:], "left": np.s_[:, : w // 2 - 1], "right": np.s_[:, w // 2 + 1:]}
        other = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}[half]
        checker, plain = inside[sl[half]], inside[sl[other]]
        assert (plain == 128).all()
        pair = next(p for p in PAIR_DIRECTIONS if all(tuple(c) in {tuple(128 + amplitude * np.array(PAIR_DIRECTIONS[p])), tuple(128 - amplitude * np.array(PAIR_DIRECTIONS[p]))} for c in checker.reshape(-1, 3)[:4]))
    direction = np.array(PAIR_DIRECTIONS[pair])
    colours = {tuple(c) for c in checker.reshape(-1, 3)}
    assert colours == {tuple(128 + amplitude * direction), tuple(128 - amplitude * direction)}
    # Neighbouring pixels alternate (1-pixel squares), so every 2x2 block averages to exactly 128.
    even = checker[: checker.shape[0] // 2 * 2, : checker.shape[1] // 2 * 2]
    blocks = even.reshape(even.shape[0] // 2, 2, even.shape[1] // 2, 2, 3).mean(axis=(1, 3))
    assert np.array_equal(blocks, np.full_like(blocks, 128.0))


def test_pattern_noise_is_bounded_and_never_clips():
    task = SyntheticTask(8, seed=5, **NOISY_TASK, pattern_amplitude=40, pattern_noise=87)
    clean = SyntheticTask(8, seed=5, **NOISY_TASK, pattern_amplitude=40)
    for i in range(8):
        noisy, plain = _inside(task, task[i]), _inside(clean, clean[i])
        difference = noisy - plain
        assert np.abs(difference).max() <= 87 and difference.std() > 40  # uniform on +-87 has std 50
        assert noisy.min() >= 128 - 127 and noisy.max() <= 128 + 127  # the extremes of A + noise: nothing cut off at 0
        assert abs(difference.mean()) < 1.0


@pytest.mark.parametrize("kwargs", [{"pattern_amplitude": 100, "pattern_noise": 28}, {"pattern_amplitude": 0}, {"pattern_noise": -1}, {"target_sizes": (224, 600)}])
def test_bad_pattern_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticTask(4, **{**NOISY_TASK, **kwargs})


def test_checker_half_questions_name_the_half():
    task = SyntheticTask(40, seed=6, **NOISY_TASK, pattern_amplitude=40)
    halves = Counter()
    for i in range(40):
        sample = task[i]
        if sample.category != "checker_half":
            continue
        assert sample.question == "Which half of the small black frame holds the fine checkered pattern?"
        assert sorted(sample.choices) == ["bottom", "left", "right", "top"]
        assert sample.choices["ABCD".index(sample.answer)] == sample.metadata["attribute"]
        halves[sample.metadata["attribute"]] += 1
    assert len(halves) == 4


# ---------------------------- named frames: several framed candidates, the question names one by colour
NAMED_TASK = dict(NOISY_TASK, canvas_size=2240, pattern_amplitude=32, frame_width=20, frame_colours=("red", "green", "blue", "yellow"), candidates=3)


def _ring(image, box, width):
    """The pixels of a frame of ``width`` around ``box``: its four bands, flattened."""
    x1, y1, x2, y2 = (int(v) for v in box)
    a = np.asarray(image, dtype=int)
    return np.concatenate([a[y1:y1 + width, x1:x2].reshape(-1, 3), a[y2 - width:y2, x1:x2].reshape(-1, 3), a[y1:y2, x1:x1 + width].reshape(-1, 3), a[y1:y2, x2 - width:x2].reshape(-1, 3)])


@settings(max_examples=15, deadline=None)
@given(index=st.integers(0, 199), seed=st.integers(0, 3))
def test_each_candidate_has_its_own_named_frame_and_the_question_names_the_asked_one(index, seed):
    from mgpo_datasets.synthetic import FRAME_COLOURS

    task = SyntheticTask(200, seed=seed, **NAMED_TASK)
    sample = task[index]
    frame = sample.metadata["frame"]
    assert f"inside the small {frame} frame" in sample.question or f"half of the small {frame} frame" in sample.question
    decoys = sample.metadata["decoy_boxes"]
    assert len(sample.target_boxes) == 1 and len(decoys) == 2
    image = sample.image()
    colours = []
    for box in (sample.target_boxes[0], *decoys):
        ring = {tuple(c) for c in _ring(image, box, 20)}
        assert len(ring) == 1  # one solid frame colour, drawn over nothing else
        colours.append(next(iter(ring)))
        x1, y1, x2, y2 = box
        assert x2 - x1 in (224, 288) and 0 <= x1 and x2 <= 2240 and 0 <= y1 and y2 <= 2240
    assert colours[0] == FRAME_COLOURS[frame] and len(set(colours)) == 3
    assert {c for c in colours} <= set(FRAME_COLOURS.values())
    boxes = [sample.target_boxes[0], *decoys]
    for i in range(3):
        for j in range(i + 1, 3):  # candidates keep a target's side apart, so a tight crop holds one
            a, b = boxes[i], boxes[j]
            assert a[2] + 288 <= b[0] or b[2] + 288 <= a[0] or a[3] + 288 <= b[1] or b[3] + 288 <= a[1]


def test_with_named_frames_the_clutter_is_muted_and_only_the_frames_are_saturated():
    from mgpo_datasets.synthetic import CLUTTER_SPREAD, FRAME_COLOURS

    named_spread = min(max(c) - min(c) for c in FRAME_COLOURS.values())
    assert named_spread >= 130 > 66 >= CLUTTER_SPREAD  # 66: the widest background (channels 170-236)
    task = SyntheticTask(6, seed=1, **{**NAMED_TASK, "clutter": 80})
    for i in range(6):
        sample = task[i]
        pixels = np.asarray(sample.image(), dtype=int).copy()
        for x1, y1, x2, y2 in (sample.target_boxes[0], *sample.metadata["decoy_boxes"]):
            pixels[int(y1):int(y2), int(x1):int(x2)] = -1000  # the candidates themselves
        rest = pixels.reshape(-1, 3)
        clutter = rest[(rest[:, 0] >= 0) & (rest != np.array(sample.image.layout.background)).any(axis=1)]
        assert len(clutter) > 10_000  # 80 clutter objects, some of them large
        assert (clutter.max(axis=1) - clutter.min(axis=1)).max() <= CLUTTER_SPREAD


def test_one_named_frame_keeps_the_target_and_options_of_the_black_frame_task():
    black = SyntheticTask(20, seed=2, **NOISY_TASK, pattern_amplitude=32)
    named = SyntheticTask(20, seed=2, **NOISY_TASK, pattern_amplitude=32, frame_colours=("red", "blue"))
    for i in range(20):
        a, b = black[i], named[i]
        assert (a.target_boxes, a.choices, a.answer) == (b.target_boxes, b.choices, b.answer)
        assert b.question == a.question.replace("black", b.metadata["frame"]) and "decoy_boxes" not in b.metadata


def test_decoys_carry_their_own_values():
    task = SyntheticTask(200, seed=0, **NAMED_TASK)
    same = 0
    for i in range(200):
        layout = task[i].image.layout
        same += sum(d.value == layout.answer_value for d in layout.decoys)
    assert 0.15 < same / 400 < 0.35  # independent draws among four values agree a quarter of the time


def test_a_wide_frame_leaves_the_pattern_the_inside():
    task = SyntheticTask(10, seed=3, **{**NAMED_TASK, "question_types": ["colour"]})
    sample = task[0]
    x1, y1, x2, y2 = (int(v) for v in sample.target_boxes[0])
    inside = np.asarray(sample.image(), dtype=int)[y1 + 20:y2 - 20, x1 + 20:x2 - 20]
    assert len({tuple(c) for c in inside.reshape(-1, 3)}) == 2  # the two checker colours, no noise in NOISY_TASK


@pytest.mark.parametrize(
    "kwargs",
    [
        {"candidates": 2},  # no colours to name them by
        {"candidates": 3, "frame_colours": ("red", "blue")},
        {"frame_colours": ("red", "red")},
        {"frame_colours": ("mauve",)},
        {"frame_width": 57},  # over a quarter of the 224-pixel target
        {"frame_width": 0},
        {"candidates": 2, "frame_colours": ("red", "blue"), "cells": 2},
        {"candidates": 2, "frame_colours": ("red", "blue"), "question_types": ["relative_position"]},
        {"candidates": 0},
    ],
)
def test_bad_frame_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticTask(4, **{**NOISY_TASK, **kwargs})
