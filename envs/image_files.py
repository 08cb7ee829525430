"""Read image files safely: sizes from headers, full decodes with a pixel limit, paths kept inside a root.

Errors are typed: :class:`ImageLoadError` names the file (or sample) and says
what is wrong: missing, truncated, not an image, or larger than the
decompression-bomb limit ``max_image_pixels``. :func:`resolve_inside` refuses
dataset paths that leave the dataset's folder.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from pathlib import Path
from typing import Union

from PIL import Image, UnidentifiedImageError

from .sample import DataError, ImageRef

Size = tuple[int, int]

# 8K (7680x4320 = 33.2 MP) images must open; Pillow's own default warns at ~89 MP.
DEFAULT_MAX_IMAGE_PIXELS = 16_384 * 16_384


class ImageLoadError(DataError):
    """An image could not be decoded; the message names the file or sample."""


def describe_ref(ref: ImageRef) -> str:
    if isinstance(ref, (str, Path)):
        return f"image file {str(ref)!r}"
    if isinstance(ref, bytes):
        return f"encoded image ({len(ref)} bytes)"
    if isinstance(ref, Image.Image):
        return f"in-memory image {ref.size}"
    return f"image from {getattr(ref, '__qualname__', type(ref).__name__)}"


def open_image(ref: ImageRef) -> Image.Image:
    if isinstance(ref, Image.Image):
        return ref
    if isinstance(ref, (str, Path)):
        if not os.path.isfile(ref):
            raise FileNotFoundError(f"no such file: {str(ref)!r}")
        return Image.open(ref)
    if isinstance(ref, (bytes, bytearray)):
        return Image.open(io.BytesIO(ref))
    if callable(ref):
        image = ref()
        if not isinstance(image, Image.Image):
            raise TypeError(f"the image callable returned {type(image).__name__}, not a PIL.Image")
        return image
    raise TypeError(f"unsupported image reference of type {type(ref).__name__}")


@contextlib.contextmanager
def pillow_limit_lifted():  # type: ignore[no-untyped-def]
    """Pillow's global pixel limit off, and its warning silenced, inside the block.

    The callers apply their own explicit ``max_image_pixels`` instead, with an error
    that says how to raise it; the global is restored even when decoding fails.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def image_size(ref: ImageRef, *, context: str = "") -> Size:
    """(width, height) of an image, reading only its header where possible."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = open_image(ref)
            size = image.size
            if not isinstance(ref, Image.Image):
                image.close()  # only the header was read: release the file now, not at garbage collection
            return size
    except (OSError, UnidentifiedImageError, TypeError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(f"{context}{describe_ref(ref)}: {error}") from error


def decode_image(ref: ImageRef, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, context: str = "") -> Image.Image:
    """Fully decode ``ref`` to an RGB ``PIL.Image``.

    Args:
        ref: the image reference (see :mod:`mgpo_datasets.sample`).
        max_image_pixels: refuse images with more pixels than this (decompression bombs).
        context: prefix for error messages, e.g. ``"row 12 of data.jsonl: "``.

    Raises:
        ImageLoadError: missing, unreadable, truncated or oversized image.
    """
    try:
        with pillow_limit_lifted():  # our own, explicit limit below instead of Pillow's global one
            image = open_image(ref)
            width, height = image.size
            if width * height > max_image_pixels:
                raise ImageLoadError(
                    f"{context}{describe_ref(ref)} is {width}x{height} = {width * height:,} pixels, over the "
                    f"limit of {max_image_pixels:,} (max_image_pixels); raise the limit if the image is trusted"
                )
            image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
        return image
    except ImageLoadError:
        raise
    except (OSError, UnidentifiedImageError, TypeError, ValueError, SyntaxError) as error:
        # Pillow reports a truncated JPEG as OSError("image file is truncated ...").
        raise ImageLoadError(f"{context}{describe_ref(ref)}: {error}") from error


def resolve_inside(root: Union[str, Path], relative: str, *, context: str = "") -> Path:
    """Resolve ``relative`` under ``root`` and refuse paths that leave it.

    Absolute paths, ``..`` components and symbolic links pointing outside
    ``root`` all raise :class:`DataError`: a dataset file must not make the
    loader read arbitrary files on the machine.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise DataError(f"{context}image path is empty")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise DataError(f"{context}image path {relative!r} is absolute; paths must be relative to {str(root)!r}")
    # realpath + a prefix test: the same check as Path.resolve() and .parents, 3x faster
    # (21,690 MME-RealWorld rows resolve in ~2 s instead of ~6 s).
    root_resolved = _real_root(str(root))
    candidate = os.path.realpath(os.path.join(root_resolved, relative))
    if candidate != root_resolved and not candidate.startswith(root_resolved.rstrip(os.sep) + os.sep):
        raise DataError(f"{context}image path {relative!r} points outside the dataset root {root_resolved!r}")
    return Path(candidate)


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)
