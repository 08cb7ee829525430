"""Decode images lazily, once, and keep a few of them.

A GRPO group plays the same sample G times in a row, and each episode needs the
original (for crops) and its downsized view. :class:`ImageStore` decodes an
original at most once while it stays in a small least-recently-used cache that
is bounded in *bytes* (a 7680x4320 image is 100 MB decoded), so a dataset is
never held in memory whole.

Errors are typed: :class:`ImageLoadError` names the file (or sample) and says
what is wrong: missing, truncated, not an image, or larger than the
decompression-bomb limit ``max_image_pixels``.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Hashable, Union

from PIL import Image, UnidentifiedImageError

from .geometry import Size
from .sample import DataError, ImageRef

# 8K (7680x4320 = 33.2 MP) images must open; Pillow's own default warns at ~89 MP.
DEFAULT_MAX_IMAGE_PIXELS = 16_384 * 16_384
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


class ImageLoadError(DataError):
    """An image could not be decoded; the message names the file or sample."""


def _describe(ref: ImageRef) -> str:
    if isinstance(ref, (str, Path)):
        return f"image file {str(ref)!r}"
    if isinstance(ref, bytes):
        return f"encoded image ({len(ref)} bytes)"
    if isinstance(ref, Image.Image):
        return f"in-memory image {ref.size}"
    return f"image from {getattr(ref, '__qualname__', type(ref).__name__)}"


def _open(ref: ImageRef) -> Image.Image:
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


def image_size(ref: ImageRef, *, context: str = "") -> Size:
    """(width, height) of an image, reading only its header where possible."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _open(ref).size
    except (OSError, UnidentifiedImageError, TypeError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(f"{context}{_describe(ref)}: {error}") from error


def decode_image(ref: ImageRef, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, context: str = "") -> Image.Image:
    """Fully decode ``ref`` to an RGB ``PIL.Image``.

    Args:
        ref: the image reference (see :mod:`mgpo_env.sample`).
        max_image_pixels: refuse images with more pixels than this (decompression bombs).
        context: prefix for error messages, e.g. ``"row 12 of data.jsonl: "``.

    Raises:
        ImageLoadError: missing, unreadable, truncated or oversized image.
    """
    try:
        with warnings.catch_warnings():
            # We apply our own, explicit limit below instead of Pillow's global one.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                image = _open(ref)
                width, height = image.size
                if width * height > max_image_pixels:
                    raise ImageLoadError(
                        f"{context}{_describe(ref)} is {width}x{height} = {width * height:,} pixels, over the "
                        f"limit of {max_image_pixels:,} (max_image_pixels); raise the limit if the image is trusted"
                    )
                image.load()
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        if image.mode != "RGB":
            image = image.convert("RGB")
        return image
    except ImageLoadError:
        raise
    except (OSError, UnidentifiedImageError, TypeError, ValueError, SyntaxError) as error:
        # Pillow reports a truncated JPEG as OSError("image file is truncated ...").
        raise ImageLoadError(f"{context}{_describe(ref)}: {error}") from error


class ImageStore:
    """A byte-bounded LRU cache of decoded images, keyed by the caller (e.g. sample id).

    Example:
        >>> from PIL import Image
        >>> store = ImageStore(max_bytes=10_000_000)
        >>> a = store.get("s1", lambda: Image.new("RGB", (100, 50)))
        >>> b = store.get("s1", lambda: Image.new("RGB", (1, 1)))  # cached: not called
        >>> a is b, store.decodes, store.cached_bytes
        (True, 1, 15000)
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.max_image_pixels = int(max_image_pixels)
        self._items: "OrderedDict[Hashable, Image.Image]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.decodes = 0  # how many times an image was really decoded (for tests and benchmarks)

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded pixels the cache holds now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, ref: ImageRef, *, context: str = "") -> Image.Image:
        """The decoded image for ``key``, decoding ``ref`` only on a miss."""
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
                return image
        image = decode_image(ref, max_image_pixels=self.max_image_pixels, context=context)
        self.decodes += 1
        self.put(key, image)
        return image

    def put(self, key: Hashable, image: Image.Image) -> None:
        """Insert an image, evicting the least recently used ones beyond ``max_bytes``."""
        size = _nbytes(image)
        with self._lock:
            if key in self._items:
                self._bytes -= _nbytes(self._items.pop(key))
            if size > self.max_bytes:
                return  # larger than the whole cache: use it once, keep nothing
            self._items[key] = image
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= _nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _nbytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


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
    root_resolved = Path(root).resolve()
    candidate = (root_resolved / relative).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise DataError(f"{context}image path {relative!r} points outside the dataset root {str(root_resolved)!r}")
    return candidate

