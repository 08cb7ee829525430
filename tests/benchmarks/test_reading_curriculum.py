"""The free-form reading curriculum (benchmarks/emergence/reading_curriculum.py)."""

import numpy as np

from emergence.freeform_task import FREEFORM_TASK
from emergence.reading_curriculum import READING_LEVELS, GatedLevels, level_task, option_answer
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
    inside = lambda s: np.asarray(decode_image(s.image), dtype=float)[y1 + 8 : y2 - 8, x1 + 8 : x2 - 8]
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
