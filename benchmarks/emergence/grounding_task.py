"""Generic grounding questions: "where is the red circle?", answered with a box.

A pretrained VLM such as Qwen2.5-VL can already point at things it is asked
about; the project's tiny model cannot. This dataset is the miniature
analogue of that pretraining: canvases in the synthetic task's style
(coloured background, solid clutter) with a few *named* objects (a solid shape
in a named colour); the question names one of them, and the annotated box is
where it lies.

It never shows the synthetic task's target or its marker: no black frame, no
checkered patch, no black object at all, so what a model learns here says
nothing about where the task's target is. Objects are placed inside one cell
of a ``cells`` x ``cells`` grid, like the task's targets with ``cells`` set,
so "the cell that holds it" is a well-defined answer.

Example:
    >>> task = GroundingTask(num_samples=4, canvas_size=896, cells=4)
    >>> sample = task[0]
    >>> sample.question.startswith("Where is the "), sample.category
    (True, 'grounding')
    >>> x1, y1, x2, y2 = sample.target_box
    >>> int(x1) // 224 == int(x2 - 1) // 224 and int(y1) // 224 == int(y2 - 1) // 224   # inside one cell
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mgpo_datasets.sample import Sample
from mgpo_datasets.synthetic import draw_shape, generated_index, overlaps

# Names and colours of the objects. None is black (the task's frame colour), and the
# clutter below never uses these exact saturated values.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 60, 220),
    "yellow": (240, 220, 30),
    "orange": (245, 140, 20),
    "purple": (140, 40, 170),
}
NAMED_SHAPES = ("circle", "triangle", "square", "diamond", "cross")


@dataclass(frozen=True)
class _Object:
    colour: str
    shape: str
    box: tuple[int, int, int, int]


class GroundingTask(Sequence[Sample]):
    """Seeded, lazily rendered "where is the <colour> <shape>?" questions (see the module docstring).

    Args:
        num_samples: dataset size; sample ``i`` depends only on ``(seed, i)`` and the knobs.
        seed: the dataset seed.
        canvas_size: side of the square canvas, original pixels.
        cells: the grid whose cells hold the objects (one object a cell at most).
        object_size: ``(smallest, largest)`` side of a named object, original pixels.
        objects: named objects a canvas holds; the question asks about the first, the
            others differ from it in both colour and shape, so the question is needed.
        clutter: unnamed small distractor shapes in muted colours.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        seed: int = 0,
        *,
        canvas_size: int = 1792,
        cells: int = 4,
        object_size: tuple[int, int] = (96, 160),
        objects: int = 2,
        clutter: int = 20,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if cells < 1 or not 1 <= objects <= min(cells * cells, len(NAMED_SHAPES), len(NAMED_COLOURS)):
            raise ValueError(f"need cells >= 1 and 1 <= objects <= {min(len(NAMED_SHAPES), len(NAMED_COLOURS))} (and <= cells^2), got cells={cells}, objects={objects}")
        low, high = (int(v) for v in object_size)
        if not 8 <= low <= high <= canvas_size // cells - 8:
            raise ValueError(f"object_size must satisfy 8 <= smallest <= largest <= cell side - 8 ({canvas_size // cells - 8}), got {object_size}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.canvas_size = int(canvas_size)
        self.cells = int(cells)
        self.object_size = (low, high)
        self.objects = int(objects)
        self.clutter = int(clutter)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        index = generated_index(self, index)
        rng = np.random.default_rng([self.seed, index, 7])
        objects, background, clutter_seed = self._layout(rng)
        asked = objects[0]
        return Sample(
            sample_id=f"grounding-{self.seed}-{index}",
            image=_GroundingRenderer(self, objects, background, clutter_seed),
            question=f"Where is the {asked.colour} {asked.shape}?",
            answer=f"{asked.colour} {asked.shape}",
            choices=(),
            target_boxes=(tuple(float(v) for v in asked.box),),  # type: ignore[arg-type]
            category="grounding",
            # Every named object's box, the asked one first: where a wrong box landed is then
            # a lookup (on the other named object, or on clutter), see emergence.experiment.
            metadata={"cell": self.cell_of(asked.box), "named_boxes": tuple(o.box for o in objects)},
        )

    def cell_of(self, box: Sequence[float]) -> tuple[int, int]:
        """``(column, row)`` of the cell that holds ``box``."""
        side = self.canvas_size // self.cells
        return int(box[0] // side), int(box[1] // side)

    def _layout(self, rng: np.random.Generator) -> tuple[list[_Object], tuple[int, int, int], int]:
        side = self.canvas_size // self.cells
        cells = rng.choice(self.cells * self.cells, size=self.objects, replace=False)
        colours = rng.choice(list(NAMED_COLOURS), size=self.objects, replace=False)
        shapes = rng.choice(NAMED_SHAPES, size=self.objects, replace=False)
        objects = []
        for cell, colour, shape in zip(cells, colours, shapes):
            col, row = int(cell) % self.cells, int(cell) // self.cells
            size = int(rng.integers(self.object_size[0], self.object_size[1] + 1))
            x = col * side + int(rng.integers(4, side - size - 4 + 1))
            y = row * side + int(rng.integers(4, side - size - 4 + 1))
            objects.append(_Object(str(colour), str(shape), (x, y, x + size, y + size)))
        background = tuple(int(v) for v in rng.integers(170, 236, size=3))
        return objects, background, int(rng.integers(2**31))  # type: ignore[return-value]


class _GroundingRenderer:
    def __init__(self, task: GroundingTask, objects: list[_Object], background: tuple[int, int, int], clutter_seed: int) -> None:
        self.task, self.objects, self.background, self.clutter_seed = task, objects, background, clutter_seed

    def __call__(self) -> Image.Image:
        size = self.task.canvas_size
        image = Image.new("RGB", (size, size), self.background)
        draw = ImageDraw.Draw(image)
        rng = np.random.default_rng(self.clutter_seed)
        keep_out = [(o.box[0] - 8, o.box[1] - 8, o.box[2] + 8, o.box[3] + 8) for o in self.objects]
        for _ in range(self.task.clutter):
            s = int(rng.integers(16, 49))
            x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
            if any(overlaps((x, y, x + s, y + s), zone, 0) for zone in keep_out):
                continue
            muted = tuple(int(v) for v in rng.integers(90, 200, size=3))
            draw_shape(draw, (x + s / 2, y + s / 2), s, NAMED_SHAPES[int(rng.integers(len(NAMED_SHAPES)))], muted)
        for o in self.objects:
            draw_shape(draw, ((o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2), o.box[2] - o.box[0], o.shape, NAMED_COLOURS[o.colour])
        return image

    def __repr__(self) -> str:
        return f"<grounding image {self.task.canvas_size}px, {len(self.objects)} objects>"


def load_grounding(argument: str = "", **kwargs: Any) -> GroundingTask:
    """The ``"grounding"`` dataset spec: ``GroundingTask(**dataset_kwargs)``."""
    if argument:
        raise ValueError(f"the grounding dataset takes its settings as dataset_kwargs, not in the spec ('grounding:{argument}')")
    return GroundingTask(**kwargs)


__all__ = ["GroundingTask", "NAMED_COLOURS", "NAMED_SHAPES", "load_grounding"]

