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

Pillow's BOX filter is area averaging only for whole factors: for a factor like
3.48 it averages the pixels whose *centres* fall in each output pixel's footprint,
3 or 4 of them (its PSNR against the true area average is 36-48 dB in our measurements).

:func:`resize_region` is what the environment calls for the view and for every
crop. For an image decoded from a JPEG (``image.format == "JPEG"``), whose pixels
already carry the codec's error, it takes a *fast path* when shrinking by 2x or
more: straight from the region (no crop copy), ``Image.reduce`` by the whole part
of the factor (exact block means; for a whole factor that is the result), then an
antialiased bilinear pass for the rest (factor 1 to 2). On 4000x3000 and
7680x4320 photos it is 1.2-2x faster; against the exact path its PSNR is 38 dB or
more (mean difference under 2 levels, the largest at hard edges), and against the
true area average 40-46 dB where BOX gets 41-48 dB: the same to the eye
(``benchmarks/results/env_throughput.md`` has the numbers). Any other source (the
synthetic task, PNG), and any shrink under 2x or enlargement, takes the exact
path: bit for bit :func:`resize_image` of the crop.

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
from typing import Optional

from PIL import Image

from .geometry import IntBox, Size

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


def is_jpeg_decoded(image: Image.Image) -> bool:
    """Whether ``image`` holds a JPEG's decoded pixels (and may take the fast path)."""
    return getattr(image, "format", None) == "JPEG"


def resize_region(image: Image.Image, box: IntBox, size: Size, *, fast: Optional[bool] = None) -> Image.Image:
    """The region ``box`` (whole pixels) of ``image``, resized to ``size``: a view or a crop the model sees.

    Exact path: ``resize_image(image.crop(box), size)``, bit for bit. Fast path (``fast``;
    by default for JPEG-decoded images, never for others), when one side shrinks by 2x
    or more and neither grows: ``Image.reduce`` of the region by the whole factors (no
    crop copy), then antialiased bilinear for what is left (see the module docstring).
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    size = (int(size[0]), int(size[1]))
    if not (0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height):
        raise ValueError(f"region {box!r} is empty or outside the {image.width}x{image.height} image")
    width, height = x2 - x1, y2 - y1
    kx, ky = width // size[0], height // size[1]  # whole shrink factors (0 when enlarging)
    if fast is None:
        fast = is_jpeg_decoded(image)
    if not fast or min(kx, ky) < 1 or max(kx, ky) < 2:
        whole = (x1, y1, x2, y2) == (0, 0, image.width, image.height)
        return resize_image(image if whole else image.crop((x1, y1, x2, y2)), size)
    reduced = image.reduce((kx, ky), box=(x1, y1, x2, y2))
    if reduced.size == size:  # whole factors: the exact block means
        return reduced
    return reduced.resize(size, Image.Resampling.BILINEAR, box=(0.0, 0.0, width / kx, height / ky))
