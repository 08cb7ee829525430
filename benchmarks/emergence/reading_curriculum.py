"""The reading stage of the free-form task: a clean checker first, the task's noise last.

Trained on the task's own noise from the start, the tiny model stayed at chance for 200
steps (``emergence_probes.md``, ninth round, step 2). The same crops with the checker louder
and the noise weaker are learned first; each level keeps ``pattern_amplitude +
pattern_noise <= 127`` (nothing clips) and the last level is the task itself. A level gives
way to the next once held-out reading at that level reaches the gate.

Answers are the option's text (``\\boxed{red and cyan}``), which the environment's grader
maps to the option's letter: with shuffled options a letter answer would also ask the model
to find the percept's word in the option list and copy the letter before it.

Example:
    >>> levels = GatedLevels(count=len(READING_LEVELS), gate=0.8)
    >>> levels.record(0.86), levels.level
    (True, 1)
    >>> levels.record(0.5), levels.level
    (False, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mgpo_datasets.sample import Sample
from mgpo_datasets.synthetic import SyntheticTask

from .experiment import answer_text
from .freeform_task import FREEFORM_TASK

# (pattern_amplitude, pattern_noise) per level; the last is FREEFORM_TASK's own.
READING_LEVELS: tuple[tuple[int, int], ...] = ((96, 0), (64, 48), (48, 72), (FREEFORM_TASK["pattern_amplitude"], FREEFORM_TASK["pattern_noise"]))


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
