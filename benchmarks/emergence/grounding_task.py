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
from mgpo_datasets.synthetic import FRAME_COLOURS, SyntheticTask, canvas_background, draw_clutter, draw_shape, generated_index, overlaps, shape_box

# Names and colours of the objects: the synthetic task's named frame colours. None is black (the
# task's default frame colour), and the clutter below never uses these exact saturated values.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = FRAME_COLOURS
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
        background = canvas_background(rng)
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


# Generic questions about one named solid shape; the reply to each is its box. None of them says
# "frame", "checker" or "pattern": the words of the free-form task's questions about its target.
GROUNDING_PHRASINGS = (
    "Where is the {colour} {shape}?",
    "What is drawn inside the small {colour} {shape}?",
    "Which half of the {colour} {shape} is brighter?",
    "Which two colours make up the small {colour} {shape}?",
    "Is the {colour} {shape} in the top or the bottom half of the image?",
    "How many corners does the small {colour} {shape} have?",
    "Which letter is written on the {colour} {shape}?",
    "What shape is the small {colour} object?",
    "Which colour is the small {shape}?",
    "What is next to the {colour} {shape}?",
)


class TaskCanvasGrounding(Sequence[Sample]):
    """One named solid shape on a canvas drawn like a synthetic task's, asked about in varied words.

    :class:`GroundingTask` draws its own few small clutter shapes; a model that learns to box
    named objects there boxes nothing on the free-form task's canvases, which hold large blobs
    and letters (probes, twelfth round). This dataset draws the background and clutter with the
    task's own code and settings, then one shape in a named colour (``FRAME_COLOURS``), anywhere.
    The task must have ``frame_colours`` set, so that its clutter is muted and the named colour
    is the only saturated one. Nothing here is framed, patterned or black: the task's target and
    its marker never appear.

    Args:
        num_samples: dataset size; sample ``i`` depends only on ``(seed, i)`` and the settings.
        seed: the dataset seed.
        task: :class:`SyntheticTask` keyword settings whose canvas and clutter to copy.
        object_size: ``(smallest, largest)`` side of the named shape, original pixels.
        phrasings: question templates with ``{colour}`` and ``{shape}``; one is drawn a sample.

    Example:
        >>> task = dict(canvas_size=1024, target_sizes=(96, 128), frame_colours=("red", "blue"), clutter=10)
        >>> sample = TaskCanvasGrounding(3, seed=0, task=task, object_size=(60, 120))[0]
        >>> sample.category, sample.answer.split()[0] in FRAME_COLOURS
        ('grounding', True)
    """

    def __init__(
        self,
        num_samples: int = 1000,
        seed: int = 0,
        *,
        task: dict[str, Any],
        object_size: tuple[int, int] = (120, 480),
        phrasings: Sequence[str] = GROUNDING_PHRASINGS,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.canvas_task = SyntheticTask(1, **{k: v for k, v in task.items() if k not in ("num_samples", "seed")})
        if not self.canvas_task.frame_colours:
            raise ValueError("the task must set frame_colours: without them its clutter is not muted and may look like a named object")
        width, height = self.canvas_task.canvas_size
        low, high = (int(v) for v in object_size)
        if not 8 <= low <= high <= min(width, height) // 2:
            raise ValueError(f"object_size must satisfy 8 <= smallest <= largest <= half the canvas, got {object_size}")
        if not phrasings or any("{colour}" not in p and "{shape}" not in p for p in phrasings):
            raise ValueError("phrasings must be non-empty, and each must name the object by {colour} or {shape}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.object_size = (low, high)
        self.phrasings = tuple(phrasings)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        index = generated_index(self, index)
        rng = np.random.default_rng([self.seed, index, 13])
        colour = str(rng.choice(list(FRAME_COLOURS)))
        shape = str(rng.choice(NAMED_SHAPES))
        size = int(rng.integers(self.object_size[0], self.object_size[1] + 1))
        width, height = self.canvas_task.canvas_size
        x, y = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
        background = canvas_background(rng)
        question = self.phrasings[int(rng.integers(len(self.phrasings)))].format(colour=colour, shape=shape)
        drawn = _Object(colour, shape, (x, y, x + size, y + size))
        box = shape_box(drawn.box, shape)
        return Sample(
            sample_id=f"task-canvas-grounding-{self.seed}-{index}",
            image=_TaskCanvasRenderer(self.canvas_task, drawn, background, int(rng.integers(2**31))),  # type: ignore[arg-type]
            question=question,
            answer=f"{colour} {shape}",
            choices=(),
            target_boxes=(tuple(float(v) for v in box),),  # type: ignore[arg-type]
            category="grounding",
        )


class _TaskCanvasRenderer:
    def __init__(self, task: SyntheticTask, drawn: _Object, background: tuple[int, int, int], clutter_seed: int) -> None:
        self.task, self.drawn, self.background, self.clutter_seed = task, drawn, background, clutter_seed

    def __call__(self) -> Image.Image:
        image = Image.new("RGB", self.task.canvas_size, self.background)
        draw = ImageDraw.Draw(image)
        x1, y1, x2, y2 = self.drawn.box
        margin = self.task.target_size
        draw_clutter(self.task, draw, np.random.default_rng(self.clutter_seed), [(x1 - margin, y1 - margin, x2 + margin, y2 + margin)])
        draw_shape(draw, ((x1 + x2) / 2, (y1 + y2) / 2), x2 - x1, self.drawn.shape, FRAME_COLOURS[self.drawn.colour])
        return image

    def __repr__(self) -> str:
        return f"<task-canvas grounding image {self.task.canvas_size}, a {self.drawn.colour} {self.drawn.shape}>"


def load_grounding(argument: str = "", **kwargs: Any) -> GroundingTask:
    """The ``"grounding"`` dataset spec: ``GroundingTask(**dataset_kwargs)``."""
    if argument:
        raise ValueError(f"the grounding dataset takes its settings as dataset_kwargs, not in the spec ('grounding:{argument}')")
    return GroundingTask(**kwargs)


__all__ = ["GROUNDING_PHRASINGS", "GroundingTask", "NAMED_COLOURS", "NAMED_SHAPES", "TaskCanvasGrounding", "load_grounding"]

