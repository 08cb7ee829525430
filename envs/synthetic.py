"""The built-in synthetic high-resolution task: small targets in large, cluttered images.

Each sample is a V*-like multiple-choice question about something small:

* ``colour``: which colour pair makes up the fine checkered patch inside the black frame;
* ``glyph``: which letter is written inside the black frame;
* ``shape``: which shape is drawn inside the black frame;
* ``relative_position``: is one small magenta shape left or right of the other;
* ``checker_half``: which half of the black frame holds the fine checkered pattern.

With ``frame_colours`` the frame takes a named colour ("inside the small red frame"), and with
``candidates`` > 1 several framed targets share the canvas, each with its own value: the
question's colour word is then the only way to tell which one to read.

Everything is generated from ``(seed, index)``, so sample ``i`` is the same on
every machine, and images are rendered only when an episode asks for them.

Why the answer is invisible in the shrunk view but plain in a crop
------------------------------------------------------------------
The default canvas is 3920x3920 pixels. At the published budget
(``max_pixels = 1280*28*28``) the model sees it at 980x980: each view pixel
is the average of a 4x4 block. The targets are built around that factor:

* the checkered patch alternates two *complementary* colours (red/cyan,
  green/magenta, blue/yellow, black/white) in squares of 2 pixels aligned to the
  4-pixel grid, so every 4x4 block holds exactly two squares of each colour and
  averages to the same mid-gray for all four answers: the view carries **no**
  information about the answer (area averaging is exact here, see
  :func:`mgpo_env.image_budget.resize_image`);
* letters are 15x21 pixels (3-pixel strokes) and shapes 12 pixels wide, so they
  shrink to 3-5 view pixels: a smudge;
* the black frame (4 pixels thick) around a target stays visible as a dark
  outline in the view, so the model can find *where* to look.

A tight crop (the smallest valid box is 28 view pixels = 112 original pixels)
is enlarged at least 4x, so a checker square spans 8 pixels, a letter stroke 12.
``SyntheticTask.describe_scales()`` prints these numbers for any settings.

Example:
    >>> task = SyntheticTask(num_samples=3, seed=0)
    >>> sample = task[0]
    >>> sample.choices, sample.answer in "ABCD"  # doctest: +ELLIPSIS
    (...), True)
    >>> task[0].question == SyntheticTask(num_samples=3, seed=0)[0].question
    True
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw

from .sample import Sample

if TYPE_CHECKING:  # the environment builds on this package, not the other way round
    from mgpo_env.image_budget import ImageBudget

QUESTION_TYPES = ("colour", "glyph", "shape", "relative_position", "checker_half")
# What a task asks when not told: the first four (checker_half is meant for pattern_amplitude/noise tasks).
DEFAULT_QUESTION_TYPES = QUESTION_TYPES[:4]

# The unit colour direction of each pair: with ``pattern_amplitude`` A the pair is 128 +- A * direction.
PAIR_DIRECTIONS: dict[str, tuple[int, int, int]] = {
    "red and cyan": (1, -1, -1),
    "green and magenta": (-1, 1, -1),
    "blue and yellow": (-1, -1, 1),
    "black and white": (-1, -1, -1),
}
HALVES = ("top", "bottom", "left", "right")
PATTERN_GRAY = 128  # the plain half of a checker_half target, and the mean of every pair when pattern_amplitude is set

# Complementary pairs: each averages to (127.5, 127.5, 127.5).
COLOUR_PAIRS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "red and cyan": ((255, 0, 0), (0, 255, 255)),
    "green and magenta": ((0, 255, 0), (255, 0, 255)),
    "blue and yellow": ((0, 0, 255), (255, 255, 0)),
    "black and white": ((0, 0, 0), (255, 255, 255)),
}

# 5x7 bitmaps, drawn ourselves so the task renders the same everywhere (no font files).
GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
}

SHAPES = ("circle", "triangle", "square", "diamond", "cross", "bar")
FRAME_COLOR = (0, 0, 0)
# Named frame colours for tasks whose question names its frame among several (``frame_colours``).
# Saturated values that the clutter of such a task keeps clear of (see ``draw_clutter``).
FRAME_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 60, 220),
    "yellow": (240, 220, 30),
    "orange": (245, 140, 20),
    "purple": (140, 40, 170),
}
PAIR_COLOR = (255, 0, 255)  # the two objects of a relative-position question
CLUTTER_SPREAD = 50  # with named frames, the most a clutter colour's channels differ (every named colour spreads 130 or more)
GLYPH_COLOR = (20, 20, 120)
SHAPE_COLOR = (150, 20, 20)
SQUARE_MARGIN = 0.1  # a "square" shape fills its drawing box less this share of the side at each edge


@dataclass(frozen=True)
class _Layout:
    """Where everything goes in one sample (cheap to compute; rendering is separate)."""

    kind: str
    answer_value: str  # the attribute, or "left"/"right" for a relative position
    shapes: tuple[str, ...]  # relative position: (object asked about, reference object)
    boxes: tuple[tuple[int, int, int, int], ...]  # target frame(s) in original pixels
    clutter_seed: int
    background: tuple[int, int, int]
    pair: str = ""  # checker_half: the checker's colour pair
    frame: str = "black"  # the asked target's frame colour, a name in FRAME_COLOURS or "black"
    decoys: tuple["_Decoy", ...] = ()  # the other framed candidates (``candidates`` > 1)


@dataclass(frozen=True)
class _Decoy:
    """A framed candidate the question does not ask about: same kind, its own frame colour and value."""

    box: tuple[int, int, int, int]
    frame: str
    value: str
    pair: str = ""


class SyntheticTask(Sequence[Sample]):
    """A seeded, lazily rendered dataset of small-target questions (see the module docstring).

    Args:
        num_samples: how many samples the dataset has.
        seed: the dataset seed; sample ``i`` depends only on ``(seed, i)`` and the knobs.
        canvas_size: ``(width, height)`` or one int for a square canvas (>= 256).
        target_size: outer side of a target's black frame, original pixels.
        grid: alignment of targets and checker period; the view's downsampling factor
            (4 at the defaults) makes the checker invisible in the view.
        checker_square: side of one checker square, original pixels (``grid / 2`` hides it).
        glyph_cell: pixel size of one cell of the 5x7 letters.
        shape_size: size of the drawn shapes, original pixels.
        clutter: number of distractor objects.
        question_types: which of ``colour``, ``glyph``, ``shape``, ``relative_position`` to ask.
        num_choices: options per question for the attribute types (2 to 4).
        cells: if > 0, each single target lies wholly inside one cell of a ``cells`` x ``cells``
            grid over the canvas (so one cell-sized crop can hold it); 0 places it anywhere.
        shuffle_choices: shuffle the options of each question (off: the attribute's fixed order,
            so a letter always names the same value).
        target_sizes: if given, each sample draws its target's side from these (overrides
            ``target_size``), e.g. ``(160, 208)`` for targets of two sizes.
        pattern_amplitude: if given, the checker's two colours are ``128 +- A`` along the pair's
            colour direction (``PAIR_DIRECTIONS``) instead of the saturated pairs, and the plain half
            of a ``checker_half`` target is gray 128.
        pattern_noise: half-width of uniform noise added to every pixel (and channel) inside the
            frame. Resampling averages it away no faster than the checker's residue, so it buries
            what a coarse view keeps of the pattern; a tight crop still shows the pattern. With
            ``pattern_amplitude`` the two must sum to at most 127, so that no pixel is clipped:
            clipping would make the checker's noise weaker than the plain gray's, which shows at
            every scale.
        frame_width: thickness of a target's frame, original pixels (default: ``grid``). The pattern
            fills the inside, so a wider frame leaves it less room.
        frame_colours: if given, names from ``FRAME_COLOURS``: each framed candidate gets a distinct
            one of them, and the question names the asked target's ("inside the small red
            frame") instead of "black". The clutter is then muted (``CLUTTER_SPREAD``), so the
            named colours are the only saturated ones.
        candidates: framed candidates on each canvas (attribute questions only; needs
            ``frame_colours`` when above 1). The question asks about the first; the others carry
            their own values, so reading the wrong frame answers at chance. ``target_boxes`` holds
            the asked one only, ``metadata["decoy_boxes"]`` the others.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        seed: int = 0,
        *,
        canvas_size: Union[int, tuple[int, int]] = 3920,
        target_size: int = 48,
        grid: int = 4,
        checker_square: int = 2,
        glyph_cell: int = 3,
        shape_size: int = 12,
        clutter: int = 80,
        question_types: Sequence[str] = DEFAULT_QUESTION_TYPES,
        num_choices: int = 4,
        cells: int = 0,
        shuffle_choices: bool = True,
        target_sizes: Sequence[int] = (),
        pattern_amplitude: Optional[int] = None,
        pattern_noise: float = 0.0,
        frame_width: Optional[int] = None,
        frame_colours: Sequence[str] = (),
        candidates: int = 1,
    ) -> None:
        width, height = (canvas_size, canvas_size) if isinstance(canvas_size, int) else tuple(canvas_size)
        if min(width, height) < 256:
            raise ValueError(f"canvas_size must be at least 256 pixels a side, got {width}x{height}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        unknown = sorted(set(question_types) - set(QUESTION_TYPES))
        if unknown or not question_types:
            raise ValueError(f"question_types must be a non-empty subset of {QUESTION_TYPES}, got {list(question_types)}")
        if not 2 <= num_choices <= 4:
            raise ValueError(f"num_choices must be 2, 3 or 4, got {num_choices}")
        sizes = tuple(int(v) for v in target_sizes) or (int(target_size),)
        for size in sizes:
            if size < 4 * grid or size > min(width, height) // 4:
                raise ValueError(f"target sizes must be between {4 * grid} and a quarter of the canvas, got {size}")
        target_size = max(sizes)
        if pattern_amplitude is not None and not 1 <= pattern_amplitude <= 127:
            raise ValueError(f"pattern_amplitude must be between 1 and 127, got {pattern_amplitude}")
        if pattern_noise < 0:
            raise ValueError(f"pattern_noise must be >= 0, got {pattern_noise}")
        if pattern_amplitude is not None and pattern_amplitude + pattern_noise > 127:
            raise ValueError(f"pattern_amplitude + pattern_noise must be at most 127 (no clipped pixel), got {pattern_amplitude} + {pattern_noise}")
        if grid < 1 or checker_square < 1:
            raise ValueError("grid and checker_square must be >= 1")
        if cells < 0 or (cells and min(width, height) // cells < target_size + 2 * grid):
            raise ValueError(f"cells must be 0 or small enough that a cell holds the {target_size}-pixel target, got {cells}")
        frame_width = int(grid if frame_width is None else frame_width)
        if not 1 <= frame_width <= min(sizes) // 4:
            raise ValueError(f"frame_width must be between 1 and a quarter of the smallest target side ({min(sizes) // 4}), got {frame_width}")
        unknown_colours = sorted(set(frame_colours) - set(FRAME_COLOURS))
        if unknown_colours or len(set(frame_colours)) != len(tuple(frame_colours)):
            raise ValueError(f"frame_colours must be distinct names from {tuple(FRAME_COLOURS)}, got {list(frame_colours)}")
        if candidates < 1 or (candidates > 1 and (len(frame_colours) < candidates or cells or "relative_position" in question_types)):
            raise ValueError(
                f"candidates must be >= 1; more than one needs at least as many frame_colours ({len(tuple(frame_colours))} given), "
                f"cells=0 and no relative_position questions, got candidates={candidates}"
            )
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.canvas_size = (int(width), int(height))
        self.target_size = int(target_size)  # the largest side: the margin kept around targets
        self.target_sizes = sizes
        self.pattern_amplitude = None if pattern_amplitude is None else int(pattern_amplitude)
        self.pattern_noise = float(pattern_noise)
        self.grid = int(grid)
        self.checker_square = int(checker_square)
        self.glyph_cell = int(glyph_cell)
        self.shape_size = int(shape_size)
        self.clutter = int(clutter)
        self.question_types = tuple(question_types)
        self.num_choices = int(num_choices)
        self.cells = int(cells)
        self.shuffle_choices = bool(shuffle_choices)
        self.frame_width = frame_width
        self.frame_colours = tuple(str(c) for c in frame_colours)
        self.candidates = int(candidates)

    # -------------------------------------------------------------- sequence
    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        index = generated_index(self, index)
        rng = np.random.default_rng([self.seed, index])
        layout = self._layout(rng)
        question, choices, answer = self._question(layout, rng)
        return Sample(
            sample_id=f"synthetic-{self.seed}-{index}",
            image=_Renderer(self, layout),
            question=question,
            answer=answer,
            choices=choices,
            target_boxes=tuple(tuple(float(v) for v in b) for b in layout.boxes),  # type: ignore[misc]
            category=layout.kind,
            metadata={
                "attribute": layout.answer_value,
                "canvas_size": self.canvas_size,
                **({"frame": layout.frame} if self.frame_colours else {}),
                **({"decoy_boxes": tuple(tuple(float(v) for v in d.box) for d in layout.decoys)} if layout.decoys else {}),
            },
        )

    def index_of(self, sample_id: str) -> int:
        prefix = f"synthetic-{self.seed}-"
        if not sample_id.startswith(prefix) or not sample_id[len(prefix):].isdigit():
            raise KeyError(f"{sample_id!r} is not a sample id of this synthetic task (ids look like '{prefix}0')")
        index = int(sample_id[len(prefix):])
        if index >= self.num_samples:
            raise KeyError(f"{sample_id!r}: the task has only {self.num_samples} samples")
        return index

    # ---------------------------------------------------------------- layout
    def _free_spot(self, rng: np.random.Generator, size: tuple[int, int], taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
        """A grid-aligned top-left corner for a ``size`` box away from ``taken`` boxes."""
        width, height = self.canvas_size
        margin = self.target_size
        for _ in range(200):
            x = int(rng.integers(margin, width - size[0] - margin)) // self.grid * self.grid
            y = int(rng.integers(margin, height - size[1] - margin)) // self.grid * self.grid
            box = (x, y, x + size[0], y + size[1])
            if all(not overlaps(box, other, margin) for other in taken):
                return x, y
        return x, y  # crowded canvas: accept an overlap rather than loop forever

    def _cell_spot(self, rng: np.random.Generator, side: int) -> tuple[int, int]:
        """A grid-aligned top-left corner that keeps the target inside one random cell."""
        width, height = self.canvas_size
        col, row = (int(v) for v in rng.integers(self.cells, size=2))
        cell_w, cell_h = width // self.cells, height // self.cells
        # One grid step clear of the cell's edges, so the frame never touches a neighbour.
        x = col * cell_w + self.grid + int(rng.integers(0, cell_w - side - 2 * self.grid + 1))
        y = row * cell_h + self.grid + int(rng.integers(0, cell_h - side - 2 * self.grid + 1))
        x = min(x // self.grid * self.grid, (col + 1) * cell_w - side - self.grid)
        y = min(y // self.grid * self.grid, (row + 1) * cell_h - side - self.grid)
        return max(x, col * cell_w), max(y, row * cell_h)

    def _layout(self, rng: np.random.Generator) -> _Layout:
        kind = self.question_types[int(rng.integers(len(self.question_types)))]
        background = canvas_background(rng)
        # One size draws nothing, so the samples of a one-size task are those of earlier versions.
        side = self.target_sizes[int(rng.integers(len(self.target_sizes)))] if len(self.target_sizes) > 1 else self.target_sizes[0]
        if kind == "relative_position":
            first, other = (str(s) for s in rng.choice(SHAPES, size=2, replace=False))
            gap = int(rng.integers(2, 6)) * side
            x, y = self._free_spot(rng, (gap + side, side), [])
            dy = int(rng.integers(-1, 2)) * self.grid * 2
            left = (x, y, x + side, y + side)
            right = (x + gap, y + dy, x + gap + side, y + dy + side)
            answer = "left" if rng.random() < 0.5 else "right"
            boxes = (left, right) if answer == "left" else (right, left)  # boxes[0] holds `first`
            return _Layout(kind, answer, (first, other), (boxes[0], boxes[1]), int(rng.integers(2**31)), background)  # type: ignore[arg-type]
        x, y = self._cell_spot(rng, side) if self.cells else self._free_spot(rng, (side, side), [])
        value, pair = self._attribute(kind, rng)
        box = (x, y, x + side, y + side)
        clutter_seed = int(rng.integers(2**31))
        if not self.frame_colours:  # the black frame: nothing more is drawn, so earlier samples stay the same
            return _Layout(kind, value, (), (box,), clutter_seed, background, pair)
        # From a child stream: the parent's draws (this target, then its question's options) stay
        # those of the black-frame task with the same seed.
        rng = rng.spawn(1)[0]
        frames = [str(c) for c in rng.choice(self.frame_colours, size=self.candidates, replace=False)]
        decoys, taken = [], [box]
        for frame in frames[1:]:
            decoy_side = self.target_sizes[int(rng.integers(len(self.target_sizes)))]
            dx, dy = self._free_spot(rng, (decoy_side, decoy_side), taken)
            taken.append((dx, dy, dx + decoy_side, dy + decoy_side))
            decoys.append(_Decoy(taken[-1], frame, *self._attribute(kind, rng)))
        return _Layout(kind, value, (), (box,), clutter_seed, background, pair, frames[0], tuple(decoys))

    def _attribute(self, kind: str, rng: np.random.Generator) -> tuple[str, str]:
        """A target's value, and for ``checker_half`` its checker's colour pair."""
        values = _ATTRIBUTE_VALUES[kind]
        value = str(values[int(rng.integers(len(values)))])
        pair = str(list(COLOUR_PAIRS)[int(rng.integers(len(COLOUR_PAIRS)))]) if kind == "checker_half" else ""
        return value, pair

    def _question(self, layout: _Layout, rng: np.random.Generator) -> tuple[str, tuple[str, ...], str]:
        if layout.kind == "relative_position":
            first, other = layout.shapes
            question = f"Is the small magenta {first} to the left or to the right of the small magenta {other}?"
            choices = ["left", "right"] if rng.random() < 0.5 else ["right", "left"]
            return question, tuple(choices), string.ascii_uppercase[choices.index(layout.answer_value)]
        pool = list(_ATTRIBUTE_VALUES[layout.kind])
        distractors = [v for v in pool if v != layout.answer_value]
        picked = [str(v) for v in rng.choice(distractors, size=self.num_choices - 1, replace=False)]
        choices = picked + [layout.answer_value]
        if self.shuffle_choices:
            rng.shuffle(choices)
        else:
            choices.sort(key=pool.index)
        question = {
            "colour": "Which two colours make up the fine checkered pattern inside the small {frame} frame?",
            "glyph": "Which letter is written inside the small {frame} frame?",
            "shape": "Which shape is drawn inside the small {frame} frame?",
            "checker_half": "Which half of the small {frame} frame holds the fine checkered pattern?",
        }[layout.kind].format(frame=layout.frame)
        return question, tuple(choices), string.ascii_uppercase[choices.index(layout.answer_value)]

    # -------------------------------------------------------------- describe
    def describe_scales(self, budget: "ImageBudget") -> dict[str, Any]:
        """Sizes of the target in the original, in the shrunk view, and in the tightest valid crop.

        ``budget`` is the environment's pixel budget, e.g. ``mgpo_env.ImageBudget()`` (the defaults).
        """
        view = budget.view_size(self.canvas_size)
        factor = self.canvas_size[0] / view[0]
        smallest_crop = budget.factor * factor  # a box of the minimum valid side, in original pixels
        crop_view = budget.view_size((math.ceil(smallest_crop), math.ceil(smallest_crop)))
        enlarge = crop_view[0] / smallest_crop
        return {
            "canvas": self.canvas_size,
            "view": view,
            "view_downsampling": factor,
            "target_frame_px": {"original": self.target_size, "view": self.target_size / factor, "tight_crop": self.target_size * enlarge},
            "checker_square_px": {"original": self.checker_square, "view": self.checker_square / factor, "tight_crop": self.checker_square * enlarge},
            "glyph_stroke_px": {"original": self.glyph_cell, "view": self.glyph_cell / factor, "tight_crop": self.glyph_cell * enlarge},
            "shape_px": {"original": self.shape_size, "view": self.shape_size / factor, "tight_crop": self.shape_size * enlarge},
            "checker_hidden_in_view": factor == int(factor) and int(factor) % (2 * self.checker_square) == 0 and self.grid % int(factor) == 0,
        }


_ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {"colour": tuple(COLOUR_PAIRS), "glyph": tuple(GLYPHS), "shape": SHAPES, "checker_half": HALVES}


def generated_index(dataset: Sequence[Any], index: int) -> int:
    """``index`` as a position in ``[0, len)`` (negatives count from the end) for a generated dataset.

    Generated datasets hand out one sample at a time, so slices are refused rather than rendering many images.
    """
    name = type(dataset).__name__
    if isinstance(index, slice):
        raise TypeError(f"{name} does not support slices; index one sample at a time")
    size = len(dataset)
    if not -size <= index < size:
        raise IndexError(f"sample index {index} out of range for {size} samples")
    return index % size


def overlaps(a: Sequence[int], b: Sequence[int], margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


class _Renderer:
    """The zero-argument callable a :class:`Sample` holds: renders its image on demand."""

    def __init__(self, task: SyntheticTask, layout: _Layout) -> None:
        self.task = task
        self.layout = layout

    def __call__(self) -> Image.Image:
        return render_layout(self.task, self.layout)

    def __repr__(self) -> str:
        return f"<synthetic image {self.layout.kind} {self.task.canvas_size}>"


def render_layout(task: SyntheticTask, layout: _Layout) -> Image.Image:
    """Draw one sample: background, clutter, then the target(s) and any framed decoys."""
    width, height = task.canvas_size
    image = Image.new("RGB", (width, height), layout.background)
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(layout.clutter_seed)
    margin = task.target_size
    keep_out = [(b[0] - margin, b[1] - margin, b[2] + margin, b[3] + margin) for b in (*layout.boxes, *(d.box for d in layout.decoys))]
    draw_clutter(task, draw, rng, keep_out)
    if layout.kind == "relative_position":
        for box, shape in zip(layout.boxes, layout.shapes):
            draw_shape(draw, _center(box), task.shape_size, shape, PAIR_COLOR)
        return image
    _draw_target(task, image, layout.boxes[0], layout.frame, layout.kind, layout.answer_value, layout.pair, [layout.clutter_seed, 1])
    for k, decoy in enumerate(layout.decoys):
        _draw_target(task, image, decoy.box, decoy.frame, layout.kind, decoy.value, decoy.pair, [layout.clutter_seed, 1, k + 1])
    return image


def _draw_target(task: SyntheticTask, image: Image.Image, box: Sequence[int], frame: str, kind: str, value: str, pair: str, noise_seed: list[int]) -> None:
    """One framed target: the frame, then its inside (pattern, letter or shape)."""
    draw = ImageDraw.Draw(image)
    colour = FRAME_COLOR if frame == "black" else FRAME_COLOURS[frame]
    width = task.frame_width
    draw.rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=colour, width=width)
    inner = (box[0] + width, box[1] + width, box[2] - width, box[3] - width)
    if kind in ("colour", "checker_half"):
        _draw_pattern(task, image, kind, value, pair, inner, noise_seed)
    elif kind == "glyph":
        draw.rectangle([inner[0], inner[1], inner[2] - 1, inner[3] - 1], fill=(255, 255, 255))
        _draw_glyph(draw, _center(box), GLYPHS[value], task.glyph_cell, GLYPH_COLOR)
    else:
        draw.rectangle([inner[0], inner[1], inner[2] - 1, inner[3] - 1], fill=(255, 255, 255))
        draw_shape(draw, _center(box), task.shape_size, value, SHAPE_COLOR)


def _center(box: Sequence[int]) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def pattern_colours(task: SyntheticTask, pair: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The checker's two colours: the saturated pair, or ``128 +- pattern_amplitude`` along its direction."""
    if task.pattern_amplitude is None:
        return COLOUR_PAIRS[pair]
    direction = np.array(PAIR_DIRECTIONS[pair])
    first, second = PATTERN_GRAY + task.pattern_amplitude * direction, PATTERN_GRAY - task.pattern_amplitude * direction
    return tuple(int(v) for v in first), tuple(int(v) for v in second)  # type: ignore[return-value]


def checker_half_box(inner: Sequence[int], half: str) -> tuple[int, int, int, int]:
    """The half of the frame's inside that holds the checker of a ``checker_half`` question."""
    x1, y1, x2, y2 = (int(v) for v in inner)
    mx, my = (x1 + x2) // 2, (y1 + y2) // 2
    return {"top": (x1, y1, x2, my), "bottom": (x1, my, x2, y2), "left": (x1, y1, mx, y2), "right": (mx, y1, x2, y2)}[half]


def _draw_pattern(task: SyntheticTask, image: Image.Image, kind: str, value: str, pair: str, inner: Sequence[int], noise_seed: list[int]) -> None:
    """The checker (all of the inside, or one half on plain gray), then the inside's noise."""
    if kind == "colour":
        _draw_checker(image, inner, pattern_colours(task, value), task.checker_square)
    else:
        ImageDraw.Draw(image).rectangle([inner[0], inner[1], inner[2] - 1, inner[3] - 1], fill=(PATTERN_GRAY,) * 3)
        _draw_checker(image, checker_half_box(inner, value), pattern_colours(task, pair), task.checker_square)
    if task.pattern_noise > 0:
        x1, y1, x2, y2 = (int(v) for v in inner)
        region = np.asarray(image.crop((x1, y1, x2, y2)), dtype=np.float32)
        noise = np.random.default_rng(noise_seed).uniform(-task.pattern_noise, task.pattern_noise, region.shape)
        image.paste(Image.fromarray(np.clip(np.rint(region + noise), 0, 255).astype(np.uint8), "RGB"), (x1, y1))


def _draw_checker(image: Image.Image, box: Sequence[int], colours: tuple[tuple[int, int, int], tuple[int, int, int]], square: int) -> None:
    x1, y1, x2, y2 = box
    ys, xs = np.mgrid[y1:y2, x1:x2]
    parity = ((xs // square) + (ys // square)) % 2
    patch = np.where(parity[..., None] == 0, np.array(colours[0], np.uint8), np.array(colours[1], np.uint8)).astype(np.uint8)
    image.paste(Image.fromarray(patch, "RGB"), (x1, y1))


def _draw_glyph(draw: ImageDraw.ImageDraw, center: tuple[float, float], rows: Sequence[str], cell: int, color: tuple[int, int, int]) -> None:
    left = round(center[0] - 2.5 * cell)
    top = round(center[1] - 3.5 * cell)
    for r, row in enumerate(rows):
        for c, bit in enumerate(row):
            if bit == "#":
                draw.rectangle([left + c * cell, top + r * cell, left + (c + 1) * cell - 1, top + (r + 1) * cell - 1], fill=color)


def draw_shape(draw: ImageDraw.ImageDraw, center: tuple[float, float], size: int, shape: str, color: tuple[int, int, int]) -> None:
    cx, cy = center
    h = size / 2
    if shape == "circle":
        draw.ellipse([cx - h, cy - h, cx + h, cy + h], fill=color)
    elif shape == "square":
        f = 1 - 2 * SQUARE_MARGIN
        draw.rectangle([cx - h * f, cy - h * f, cx + h * f, cy + h * f], fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)], fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)], fill=color)
    elif shape == "cross":
        t = size / 6
        draw.rectangle([cx - h, cy - t, cx + h, cy + t], fill=color)
        draw.rectangle([cx - t, cy - h, cx + t, cy + h], fill=color)
    elif shape == "bar":
        draw.rectangle([cx - h, cy - size / 8, cx + h, cy + size / 8], fill=color)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def shape_box(box: Sequence[int], shape: str) -> tuple[int, int, int, int]:
    """The box :func:`draw_shape` fills when it draws ``shape`` in the square ``box`` (a square fills less)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    if shape != "square":
        return x1, y1, x2, y2
    margin = round((x2 - x1) * SQUARE_MARGIN)
    return x1 + margin, y1 + margin, x2 - margin, y2 - margin


def canvas_background(rng: np.random.Generator) -> tuple[int, int, int]:
    """A canvas's plain background colour: each channel 170-235 (pale, never a named or clutter colour)."""
    return tuple(int(v) for v in rng.integers(170, 236, size=3))  # type: ignore[return-value]


def draw_clutter(task: SyntheticTask, draw: ImageDraw.ImageDraw, rng: np.random.Generator, keep_out: list[tuple[int, int, int, int]]) -> None:
    """Solid distractors: large blobs, and small shapes and letters *without* a frame.

    ``task.clutter`` tries, each skipped where it would touch a ``keep_out`` box. Other datasets
    that want canvases like a task's draw them with this too.
    """
    width, height = task.canvas_size
    for _ in range(task.clutter):
        kind = rng.random()
        if kind < 0.5:
            size = int(rng.integers(task.target_size, max(task.target_size + 1, min(width, height) // 8)))
        else:
            size = int(rng.integers(task.shape_size, task.shape_size * 2 + 1))
        x = int(rng.integers(0, width - size))
        y = int(rng.integers(0, height - size))
        box = (x, y, x + size, y + size)
        if any(overlaps(box, zone, 0) for zone in keep_out):
            continue
        # Never black (the frame's colour) nor magenta (the relative-position pair). With named frames,
        # muted: a gray level plus small per-channel offsets, so no clutter reads as a named colour.
        if task.frame_colours:
            level = int(rng.integers(50, 211))
            color = tuple(int(level + v) for v in rng.integers(-CLUTTER_SPREAD // 2, CLUTTER_SPREAD // 2 + 1, size=3))
        else:
            color = tuple(int(v) for v in rng.integers(40, 230, size=3))
        if kind < 0.3:
            draw.rectangle([x, y, x + size - 1, y + size - 1], fill=color)
        elif kind < 0.5:
            draw.ellipse([x, y, x + size - 1, y + size - 1], fill=color)
        elif kind < 0.8:
            draw_shape(draw, (x + size / 2, y + size / 2), size, SHAPES[int(rng.integers(len(SHAPES)))], color)
        else:
            letter = list(GLYPHS)[int(rng.integers(len(GLYPHS)))]
            _draw_glyph(draw, (x + size / 2, y + size / 2), GLYPHS[letter], max(1, task.glyph_cell), color)


def load_synthetic(argument: str = "", **kwargs: Any) -> SyntheticTask:
    """The ``"synthetic"`` dataset spec: ``SyntheticTask(**dataset_kwargs)``."""
    if argument:
        raise ValueError(f"the synthetic dataset takes its settings as dataset_kwargs, not in the spec ('synthetic:{argument}')")
    return SyntheticTask(**kwargs)
