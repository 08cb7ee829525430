"""The free-form reading curriculum (benchmarks/emergence/reading_curriculum.py)."""

import math
import random
from collections import Counter

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from emergence.freeform_task import FREEFORM_TASK
from emergence.reading_curriculum import READING_LEVELS, GatedLevels, level_task, option_answer, reading_crop
from mgpo_env.geometry import contains, validate_box, view_to_original
from mgpo_datasets.image_files import decode_image
from mgpo_datasets.synthetic import SyntheticTask
from mgpo_env.grading import grade


def test_levels_get_harder_never_clip_and_end_at_the_task():
    amplitudes = [a for a, _ in READING_LEVELS]
    noises = [z for _, z in READING_LEVELS]
    assert amplitudes == sorted(amplitudes, reverse=True) and noises == sorted(noises)
    assert all(a + z <= 127 for a, z in READING_LEVELS)
    assert READING_LEVELS[-1] == (FREEFORM_TASK["pattern_amplitude"], FREEFORM_TASK["pattern_noise"])
    last, task = level_task(len(READING_LEVELS) - 1, 3, seed=5), SyntheticTask(3, seed=5, **FREEFORM_TASK)
    for i in range(3):
        assert last[i].question == task[i].question and last[i].answer == task[i].answer
        assert np.array_equal(np.asarray(decode_image(last[i].image)), np.asarray(decode_image(task[i].image)))


def test_the_clean_level_shows_a_louder_checker_inside_the_same_target():
    clean, task = level_task(0, 1, seed=7)[0], level_task(len(READING_LEVELS) - 1, 1, seed=7)[0]
    assert clean.target_boxes == task.target_boxes and clean.answer == task.answer
    x1, y1, x2, y2 = (int(v) for v in clean.target_boxes[0])
    inset = FREEFORM_TASK["frame_width"] + 2  # inside the frame
    inside = lambda s: np.asarray(decode_image(s.image), dtype=float)[y1 + inset : y2 - inset, x1 + inset : x2 - inset]
    # the clean level has no noise: neighbouring pixels differ only where the checker does
    assert np.abs(np.diff(inside(clean), axis=1)).max() <= 2 * 96 + 1
    assert inside(task).std() > 0


def test_the_option_text_answer_earns_the_reward():
    for sample in level_task(0, 8, seed=3):
        reply = option_answer(sample)
        assert reply.startswith("\\boxed{") and sample.choices[ord(sample.answer) - 65] in reply
        assert grade(reply, sample.answer, sample.choices).correct


def test_levels_move_on_only_at_the_gate_and_stop_at_the_last():
    levels = GatedLevels(count=3, gate=0.8)
    assert [levels.record(a) for a in (0.5, 0.79, 0.8, 0.95, 0.99)] == [False, False, True, True, False]
    assert levels.level == 2 and levels.last


@given(
    side=st.integers(100, 600),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
    most=st.floats(1.0, 2.0),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=200, deadline=None)
def test_reading_crops_hold_the_target_in_whole_pixels_from_the_smallest_valid_box(side, x, y, most, seed):
    canvas, view = 2240, 224
    x1, y1 = x * (canvas - side), y * (canvas - side)
    target = (x1, y1, x1 + side, y1 + side)
    box = reading_crop(target, view, canvas, random.Random(seed), most=most)
    assert all(isinstance(v, int) for v in box)
    bx1, by1, bx2, by2 = box
    assert bx2 - bx1 == by2 - by1 and 0 <= bx1 and 0 <= by1 and bx2 <= view and by2 <= view
    # it holds the target (in view pixels) and is a box the environment accepts
    assert contains(view_to_original(box, (view, view), (canvas, canvas)), target)
    assert validate_box(box, (view, view))[1] is None
    # no larger than `most` x the target's side, unless the smallest valid box is already larger
    smallest = max(29, math.ceil((x1 + side) / 10) - math.floor(x1 / 10), math.ceil((y1 + side) / 10) - math.floor(y1 / 10))
    assert smallest <= bx2 - bx1 <= max(smallest, most * side / 10)


def test_reading_crop_sides_cover_the_range_evenly():
    rng = random.Random(3)
    target = (1000, 1000, 1224, 1224)  # 22.4 view pixels: sides 29 (smallest valid) to 31 (1.4x)
    sides = Counter(b[2] - b[0] for b in (reading_crop(target, 224, 2240, rng) for _ in range(300)))
    assert set(sides) == {29, 30, 31}
    bigger = (1000, 1000, 1400, 1400)  # 40 whole view pixels: sides 40 (the target itself) to 56
    counts = Counter(b[2] - b[0] for b in (reading_crop(bigger, 224, 2240, rng) for _ in range(1600)))
    assert min(counts) == 40 and max(counts) == 56 and min(counts.values()) > 50


def test_docstring_examples():
    import doctest

    import emergence.reading_curriculum as module

    assert doctest.testmod(module).failed == 0
