"""The reading stage of the free-form task: a clean checker first, the task's noise last.

Trained on the task's own noise from the start, the tiny model stayed at chance for 200
steps (``emergence_probes.md``, ninth round, step 2). The same crops with the checker louder
and the noise weaker are learned first; each level keeps ``pattern_amplitude +
pattern_noise <= 127`` (nothing clips) and the last level is the task itself. A level gives
way to the next once held-out reading at that level reaches the gate.

Answers are the option's text (``\\boxed{red and cyan}``), which the environment's grader
maps to the option's letter: with shuffled options a letter answer would also ask the model
to find the percept's word in the option list and copy the letter before it.

The crop a reading row shows (:func:`reading_crop`) is drawn in whole view pixels, its side
from the environment's smallest valid box up to 1.4x the target's: a 1-pixel checker shrunk
to the view budget shows as a moire pattern that changes with the shrink factor, and a reader
trained on one factor reads others poorly (eleventh round: 0.89 at the trained 1.34-1.38x
against 0.33 at the smallest valid box, 1.29x, for 224-pixel targets).

Example:
    >>> levels = GatedLevels(count=len(READING_LEVELS), gate=0.8)
    >>> levels.record(0.86), levels.level
    (True, 1)
    >>> levels.record(0.5), levels.level
    (False, 1)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

from mgpo_datasets.sample import Sample
from mgpo_datasets.synthetic import SyntheticTask
from mgpo_env.geometry import original_to_view, smallest_valid_side

from .experiment import answer_text
from .freeform_task import FREEFORM_TASK

# (pattern_amplitude, pattern_noise) per level; the last is FREEFORM_TASK's own.
READING_LEVELS: tuple[tuple[int, int], ...] = (
    (96, 0), (64, 48), (40, 80), (24, 95), (FREEFORM_TASK["pattern_amplitude"], FREEFORM_TASK["pattern_noise"])
)


def level_task(level: int, num_samples: int, seed: int) -> SyntheticTask:
    """The free-form task with level ``level``'s checker amplitude and noise."""
    amplitude, noise = READING_LEVELS[level]
    kwargs: dict[str, Any] = {**FREEFORM_TASK, "pattern_amplitude": amplitude, "pattern_noise": noise}
    return SyntheticTask(num_samples, seed=seed, **kwargs)


def option_answer(sample: Sample) -> str:
    """The reply that names the right option by its text, e.g. ``\\boxed{bottom}``."""
    if not sample.choices:
        raise ValueError(f"sample {sample.sample_id!r} has no options to name")
    return answer_text(sample.answer_text)


def reading_crop(target: Sequence[float], view: int, canvas: int, rng: random.Random, most: float = 1.4, min_side: float = 28.0) -> tuple[int, int, int, int]:
    """A square crop in whole view pixels that holds ``target`` (original pixels).

    Its side is uniform between the smallest valid one (longer than ``min_side`` and than the
    target's extent in whole pixels) and ``most`` x the target's side, and its place uniform
    among those that hold the target inside the view.

    >>> reading_crop((1308, 780, 1532, 1004), 224, 2240, random.Random(0), most=1.0)  # the smallest: 29 px
    (128, 72, 157, 101)
    """
    x1, y1, x2, y2 = original_to_view(target, (view, view), (canvas, canvas))
    need = max(smallest_valid_side(min_side), math.ceil(x2) - math.floor(x1), math.ceil(y2) - math.floor(y1))
    if need > view:
        raise ValueError(f"target {tuple(target)} does not fit a valid box inside a {view}-pixel view")
    side = rng.randint(need, max(need, min(view, int(most * max(x2 - x1, y2 - y1)))))
    left = rng.randint(max(0, math.ceil(x2) - side), min(view - side, math.floor(x1)))
    top = rng.randint(max(0, math.ceil(y2) - side), min(view - side, math.floor(y1)))
    return left, top, left + side, top + side


@dataclass
class GatedLevels:
    """Which level trains now: move on once held-out accuracy at the current level reaches ``gate``."""

    count: int
    gate: float
    level: int = 0

    def record(self, accuracy: float) -> bool:
        """Note a held-out accuracy at the current level; True if that moved to the next level."""
        if accuracy >= self.gate and self.level < self.count - 1:
            self.level += 1
            return True
        return False

    @property
    def last(self) -> bool:
        return self.level == self.count - 1
