"""Boxes and their coordinate frames.

A model names a region in the frame of the image it was shown (its *view*), but
the environment crops the *original* image. Every box therefore travels through
one mapping, written once here:

    model text --parse--> numbers in a frame --to_view_pixels--> view pixels
               --validate (policy)--> --view_to_original--> original pixels --> crop

Frames (``BoxFrame``):

* ``"pixel"``: absolute pixels of the view (Qwen2.5-VL's convention, the default).
* ``"norm1000"``: 0-1000 on both axes, whatever the view's size (Qwen2-VL style).
* ``"relative"``: 0-1 on both axes.

Boxes are ``(x1, y1, x2, y2)`` tuples, x to the right and y down, ``x2``/``y2``
exclusive, as in ``PIL.Image.crop``.

Example:
    >>> to_view_pixels((250, 500, 750, 1000), "norm1000", view_size=(1000, 500))
    (250.0, 250.0, 750.0, 500.0)
    >>> view_to_original((100, 50, 200, 100), view_size=(1000, 500), original_size=(4000, 2000))
    (400.0, 200.0, 800.0, 400.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Tuple

Box = Tuple[float, float, float, float]
IntBox = Tuple[int, int, int, int]
Size = Tuple[int, int]  # (width, height), as PIL reports it

SNAP = 1e-6  # floating-point noise tolerated when rounding boxes to pixels

BoxFrame = Literal["pixel", "norm1000", "relative"]
BOX_FRAMES: tuple[str, ...] = ("pixel", "norm1000", "relative")

_FRAME_EXTENT = {"norm1000": 1000.0, "relative": 1.0}


def check_frame(frame: str) -> None:
    """Raise ``ValueError`` naming the allowed frames if ``frame`` is unknown."""
    if frame not in BOX_FRAMES:
        raise ValueError(f"unknown box frame {frame!r}; choose one of {', '.join(BOX_FRAMES)}")


def to_view_pixels(box: Sequence[float], frame: str, view_size: Size) -> Box:
    """Express ``box`` (given in ``frame``) in absolute pixels of the view."""
    check_frame(frame)
    x1, y1, x2, y2 = (float(v) for v in box)
    if frame == "pixel":
        return (x1, y1, x2, y2)
    extent = _FRAME_EXTENT[frame]
    sx, sy = view_size[0] / extent, view_size[1] / extent
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def from_view_pixels(box: Sequence[float], frame: str, view_size: Size) -> Box:
    """Inverse of :func:`to_view_pixels`: express a view-pixel box in ``frame``."""
    check_frame(frame)
    x1, y1, x2, y2 = (float(v) for v in box)
    if frame == "pixel":
        return (x1, y1, x2, y2)
    extent = _FRAME_EXTENT[frame]
    sx, sy = extent / view_size[0], extent / view_size[1]
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def view_to_original(box: Sequence[float], view_size: Size, original_size: Size) -> Box:
    """Map view pixels to original pixels: ``x_orig = x / view_w * orig_w`` (same for y)."""
    sx = original_size[0] / view_size[0]
    sy = original_size[1] / view_size[1]
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def original_to_view(box: Sequence[float], view_size: Size, original_size: Size) -> Box:
    """Map original pixels to view pixels (inverse of :func:`view_to_original`)."""
    return view_to_original(box, original_size, view_size)


def to_pixel_box(box: Sequence[float], size: Size) -> IntBox:
    """Round a float box *outwards* to whole pixels and clip it to an image of ``size``.

    Outward rounding keeps every pixel the model's box touches, so a box that
    covers a target in view pixels still covers it after the mapping. Values
    within ``SNAP`` of a whole pixel snap to it first, so that the same region
    written in another frame (232.00000001 after a 0-1000 round trip) gives the
    same pixels.
    """
    x1, y1, x2, y2 = box
    w, h = size
    return (
        max(0, min(w, math.floor(x1 + SNAP))),
        max(0, min(h, math.floor(y1 + SNAP))),
        max(0, min(w, math.ceil(x2 - SNAP))),
        max(0, min(h, math.ceil(y2 - SNAP))),
    )


@dataclass(frozen=True)
class BoxPolicy:
    """Which boxes the environment accepts, measured in view pixels.

    The defaults are the published reference's rules: the box lies inside the
    view (``0 <= x1 < x2 <= w``, same for y), both sides are longer than 28 view
    pixels and the aspect ratio is under 100. With ``clamp=True`` a box that
    pokes out of the view is clipped into it instead of being rejected (the
    side and aspect rules still apply after clipping).
    """

    min_side: float = 28.0
    max_aspect: float = 100.0
    clamp: bool = False

    def __post_init__(self) -> None:
        if not (self.min_side >= 0 and math.isfinite(self.min_side)):
            raise ValueError(f"BoxPolicy.min_side must be a finite number >= 0, got {self.min_side!r}")
        if not self.max_aspect > 1:
            raise ValueError(f"BoxPolicy.max_aspect must be > 1, got {self.max_aspect!r}")


def smallest_valid_side(min_side: float) -> int:
    """The fewest whole view pixels a box side needs to pass ``BoxPolicy``'s rule (strictly longer than ``min_side``).

    >>> smallest_valid_side(28.0), smallest_valid_side(28.5)
    (29, 29)
    """
    return int(math.floor(min_side)) + 1


def validate_box(box: Sequence[float], view_size: Size, policy: BoxPolicy = BoxPolicy()) -> tuple[Optional[Box], Optional[str]]:
    """Apply ``policy`` to a view-pixel box.

    Returns ``(box, None)`` for an accepted box (clipped when ``policy.clamp``)
    or ``(None, reason)`` with a short human-readable reason.

    Example:
        >>> validate_box((10, 10, 100, 100), (500, 500))
        ((10.0, 10.0, 100.0, 100.0), None)
        >>> validate_box((10, 10, 30, 100), (500, 500))[1]
        'box is 20 x 90 view pixels; both sides must be longer than 28'
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, "box has a non-finite coordinate"
    w, h = view_size
    if policy.clamp:
        x1, x2 = max(0.0, min(w, x1)), max(0.0, min(w, x2))
        y1, y2 = max(0.0, min(h, y1)), max(0.0, min(h, y2))
    if not (x1 < x2 and y1 < y2):
        return None, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is empty or has x2 <= x1 or y2 <= y1"
    if not (0 <= x1 and x2 <= w and 0 <= y1 and y2 <= h):
        return None, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {w}x{h} image"
    bw, bh = x2 - x1, y2 - y1
    if not (bw > policy.min_side and bh > policy.min_side):
        return None, f"box is {bw:g} x {bh:g} view pixels; both sides must be longer than {policy.min_side:g}"
    if max(bw, bh) / min(bw, bh) >= policy.max_aspect:
        return None, f"box aspect ratio {max(bw, bh) / min(bw, bh):.1f} is not under {policy.max_aspect:g}"
    return (x1, y1, x2, y2), None


def box_area(box: Sequence[float]) -> float:
    """Area of a box; 0 for an empty one."""
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """Area of the overlap of two boxes."""
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def contains(outer: Sequence[float], inner: Sequence[float]) -> bool:
    """Whether ``outer`` covers ``inner`` entirely (a grounding *hit*)."""
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def side_ratio(box: Sequence[float], reference: Sequence[float]) -> float:
    """The longest side of ``box`` over the longest side of ``reference`` (inf for an empty reference).

    How much larger a crop is than its target: a square crop of 1.25x the target's side gives 1.25.
    """
    side = max(box[2] - box[0], box[3] - box[1], 0.0)
    ref = max(reference[2] - reference[0], reference[3] - reference[1], 0.0)
    return side / ref if ref > 0 else float("inf")


def tight_hit(crop: Sequence[float], target: Sequence[float], max_side_ratio: float) -> bool:
    """A hit that is also tight: ``crop`` holds ``target`` and is at most ``max_side_ratio`` x its side.

    Where only crops close to the target's size reveal the answer, a loose box that holds the
    target is not yet grounding; the cap is the largest crop that still reveals it.
    """
    return contains(crop, target) and side_ratio(crop, target) <= max_side_ratio
