"""Draw boxes on images: one function for ``env.render()`` and the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from PIL import Image, ImageDraw

from .geometry import Box

PREDICTED_COLOR = (230, 40, 40)  # the model's valid crop boxes
INVALID_COLOR = (255, 170, 0)  # boxes the policy rejected (drawn clipped to the image)
TARGET_COLOR = (30, 200, 60)  # annotated boxes


@dataclass(frozen=True)
class LabelledBox:
    """A box in original-image pixels, with how to draw it."""

    box: Box
    color: tuple[int, int, int] = PREDICTED_COLOR
    label: Optional[str] = None


def thumbnail_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size of an image scaled down (never up) so its longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(size))
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def draw_boxes(image: Image.Image, boxes: Sequence[LabelledBox], *, max_side: Optional[int] = 1024) -> Image.Image:
    """A copy of ``image`` (scaled to ``max_side``) with ``boxes`` drawn on it.

    Boxes are given in the coordinates of ``image`` and scaled with it, so the
    same call serves a 4000-pixel original and its thumbnail. Line width grows
    with the drawn size so boxes stay visible.

    Example:
        >>> out = draw_boxes(Image.new("RGB", (4000, 3000)), [LabelledBox((0, 0, 2000, 1500))], max_side=400)
        >>> out.size, out.getpixel((100, 0))
        ((400, 300), (230, 40, 40))
    """
    size = thumbnail_size(image.size, max_side) if max_side else image.size
    canvas = image.convert("RGB").resize(size, Image.Resampling.BOX) if size != image.size else image.convert("RGB").copy()
    scale_x, scale_y = size[0] / image.width, size[1] / image.height
    width = max(2, round(max(size) / 250))
    draw = ImageDraw.Draw(canvas)
    for item in boxes:
        x1, y1, x2, y2 = item.box
        rect = [
            max(0, min(size[0] - 1, round(x1 * scale_x))),
            max(0, min(size[1] - 1, round(y1 * scale_y))),
            max(0, min(size[0] - 1, round(x2 * scale_x) - 1)),
            max(0, min(size[1] - 1, round(y2 * scale_y) - 1)),
        ]
        if rect[2] < rect[0] or rect[3] < rect[1]:
            continue
        draw.rectangle(rect, outline=item.color, width=width)
        if item.label:
            draw.text((rect[0] + width + 1, rect[1] + width + 1), item.label, fill=item.color)
    return canvas
