"""One question about one image: the unit every dataset yields.

A dataset for the environment (:class:`mgpo_env.HighResVQAEnv`) is any sequence of
:class:`Sample` (``len`` and integer indexing). The image is a *reference*,
decoded only when an episode needs it:

* a file path (``str`` or ``pathlib.Path``);
* encoded bytes (JPEG, PNG, ...), e.g. HR-Bench's base64 column once decoded;
* a zero-argument callable returning a ``PIL.Image`` (the synthetic task renders lazily);
* a ``PIL.Image`` already in memory.

Schema:

=================  ===========================================================
``sample_id``      unique string id (used by ``reset(options={"sample_id": ...})``)
``image``          the image reference (above)
``question``       question text *without* the options
``answer``         the option letter (``"B"``) when ``choices`` are given, else free text
``choices``        option texts in order A, B, C, ... (empty for free-form questions)
``target_boxes``   annotated boxes ``(x1, y1, x2, y2)`` in original pixels (may be empty)
``category``       a category name for per-category metrics (or ``None``)
``metadata``       anything else the source provides (task, subtask, ...)
=================  ===========================================================
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from PIL import Image


Box = tuple[float, float, float, float]  # (x1, y1, x2, y2) in original pixels
ImageRef = Union[str, Path, bytes, Callable[[], Image.Image], Image.Image]


class DataError(ValueError):
    """A dataset row or file is unusable; the message names the file and the row."""


@dataclass(frozen=True)
class Sample:
    """One question about one image (see the module docstring for the schema)."""

    sample_id: str
    image: ImageRef
    question: str
    answer: str
    choices: tuple[str, ...] = ()
    target_boxes: tuple[Box, ...] = ()
    category: Optional[str] = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.sample_id, str) or not self.sample_id:
            raise DataError(f"sample_id must be a non-empty str, got {self.sample_id!r}")
        where = f"sample {self.sample_id!r}"
        if not isinstance(self.question, str) or not self.question.strip():
            raise DataError(f"{where}: question is empty")
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise DataError(f"{where}: answer is empty")
        object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
        if self.choices:
            letters = string.ascii_uppercase[: len(self.choices)]
            if self.answer.strip().upper() not in letters or len(self.answer.strip()) != 1:
                raise DataError(f"{where}: answer {self.answer!r} is not one of the option letters {', '.join(letters)}")
            object.__setattr__(self, "answer", self.answer.strip().upper())
        boxes = []
        for box in self.target_boxes:
            if len(box) != 4:
                raise DataError(f"{where}: target box {box!r} does not have 4 numbers")
            x1, y1, x2, y2 = (float(v) for v in box)
            if not (x1 < x2 and y1 < y2):
                raise DataError(f"{where}: target box {box!r} is empty (need x1 < x2 and y1 < y2)")
            boxes.append((x1, y1, x2, y2))
        object.__setattr__(self, "target_boxes", tuple(boxes))

    @property
    def target_box(self) -> Optional[Box]:
        """The box covering every annotated box, or ``None`` when there is none."""
        return union_box(self.target_boxes) if self.target_boxes else None

    @property
    def answer_text(self) -> str:
        """The answer as words: the correct option's text, or the free-form answer."""
        if self.choices:
            return self.choices[string.ascii_uppercase.index(self.answer)]
        return self.answer


def find_sample(dataset: Sequence[Sample], sample_id: str) -> int:
    """Index of the sample with ``sample_id`` (uses ``dataset.index_of`` when it has one)."""
    index_of = getattr(dataset, "index_of", None)
    if callable(index_of):
        return int(index_of(sample_id))
    for i in range(len(dataset)):
        if dataset[i].sample_id == sample_id:
            return i
    raise KeyError(f"no sample with id {sample_id!r} in the dataset ({len(dataset)} samples)")


def union_box(boxes: Sequence[Sequence[float]]) -> Box:
    """The smallest box that covers every box in ``boxes`` (which must not be empty)."""
    if not boxes:
        raise ValueError("union_box needs at least one box")
    return (
        float(min(b[0] for b in boxes)),
        float(min(b[1] for b in boxes)),
        float(max(b[2] for b in boxes)),
        float(max(b[3] for b in boxes)),
    )
