"""The visual-token budget: how large an image the model is shown.

Qwen2.5-VL cuts an image into 14-pixel patches and merges 2x2 of them into one
visual token, so one token covers 28x28 pixels and both sides must be multiples
of 28 (``factor``). The published MGPO setup keeps every image (the original view
and every crop) between ``min_pixels = 256*28*28`` and ``max_pixels = 1280*28*28``,
that is 256 to 1280 tokens an image.

:func:`fit_size` reproduces the size rule of Qwen2-VL's image processor, so an
image we resize here passes through the processor unchanged (no second resize).
:func:`resize_to_budget` then resizes with a good filter: area averaging (BOX)
when shrinking, which is the correct low-pass filter for downscaling and hides
detail finer than the scale factor instead of aliasing it; bicubic when enlarging
a small crop. (The published reference uses nearest-neighbour for both.)

Example:
    >>> budget = ImageBudget()
    >>> budget.view_size((4000, 3000))
    (1148, 840)
    >>> budget.visual_tokens((1148, 840))
    1230
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from .geometry import Size

DEFAULT_FACTOR = 28
DEFAULT_MIN_PIXELS = 256 * 28 * 28
DEFAULT_MAX_PIXELS = 1280 * 28 * 28
# Qwen2-VL's processor refuses images more elongated than this.
MAX_ASPECT_RATIO = 200


def fit_size(width: int, height: int, *, factor: int = DEFAULT_FACTOR, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS) -> Size:
    """The (width, height) an image is shown at: sides multiples of ``factor``,
    area within ``[min_pixels, max_pixels]``, aspect ratio kept as well as rounding allows.

    Rule (Qwen2-VL's ``smart_resize``): round each side to the nearest multiple of
    ``factor``; if the area is too large, scale both sides down by
    ``sqrt(h*w/max_pixels)`` and round *down*; if too small, scale up by
    ``sqrt(min_pixels/(h*w))`` and round *up*.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"image of {width}x{height} has an aspect ratio over {MAX_ASPECT_RATIO}, which Qwen2.5-VL's processor refuses; crop or pad it first"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return (int(w_bar), int(h_bar))


@dataclass(frozen=True)
class ImageBudget:
    """Pixel budget of every image shown to the model (see the module docstring)."""

    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    factor: int = DEFAULT_FACTOR

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(f"factor must be positive, got {self.factor}")
        if self.min_pixels < self.factor * self.factor:
            raise ValueError(f"min_pixels must be at least factor**2 = {self.factor ** 2}, got {self.min_pixels}")
        if self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels ({self.max_pixels}) must not be smaller than min_pixels ({self.min_pixels})")

    def view_size(self, size: Size) -> Size:
        """The (width, height) an image of ``size`` is shown at."""
        return fit_size(size[0], size[1], factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

    def visual_tokens(self, view_size: Size) -> int:
        """Visual tokens an image of ``view_size`` (already fitted) costs."""
        return (view_size[0] // self.factor) * (view_size[1] // self.factor)


def resize_image(image: Image.Image, size: Size) -> Image.Image:
    """Resize to ``size`` with area averaging when shrinking and bicubic when enlarging."""
    if image.size == tuple(size):
        return image
    shrinking = size[0] <= image.width and size[1] <= image.height
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return image.resize(tuple(size), resample=resample)


def resize_to_budget(image: Image.Image, budget: ImageBudget = ImageBudget()) -> Image.Image:
    """Resize ``image`` to the size the model is shown (see :class:`ImageBudget`)."""
    return resize_image(image, budget.view_size(image.size))
