"""Decode images lazily, once, and keep a few of them.

A GRPO group plays the same sample G times in a row, and each episode needs the
original (for crops) and its downsized view. :class:`ImageStore` decodes an
original at most once while it stays in a small least-recently-used cache that
is bounded in *bytes* (a 7680x4320 image is 100 MB decoded), so a dataset is
never held in memory whole. It also keeps the shrunk view of each original per
pixel budget (:meth:`ImageStore.view`), so a group computes it once.

When an episode will never crop (``need_original=False``, e.g. the single-turn
protocol) and nothing is cached yet, the view of a JPEG file is made from a
reduced-size decode (``draft()``: the codec's own 1/2, 1/4 or 1/8 scaling), never
smaller than the view: 1.2-2x faster than a full decode and view, and it holds
only the view in memory. Measured against the exact path it is the same to the
eye (PSNR ~38 dB, mean difference ~1.5 levels; see
``benchmarks/results/env_throughput.md``); other formats, and every episode that
crops, use the full decode.

Errors are typed: :class:`ImageLoadError` names the file (or sample) and says
what is wrong: missing, truncated, not an image, or larger than the
decompression-bomb limit ``max_image_pixels``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Hashable, NamedTuple, Optional, Union

from PIL import Image, UnidentifiedImageError

from .geometry import Size
from .image_budget import ImageBudget, resize_region
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


@contextlib.contextmanager
def _pillow_limit_lifted():  # type: ignore[no-untyped-def]
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
            image = _open(ref)
            size = image.size
            if not isinstance(ref, Image.Image):
                image.close()  # only the header was read: release the file now, not at garbage collection
            return size
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
        with _pillow_limit_lifted():  # our own, explicit limit below instead of Pillow's global one
            image = _open(ref)
            width, height = image.size
            if width * height > max_image_pixels:
                raise ImageLoadError(
                    f"{context}{_describe(ref)} is {width}x{height} = {width * height:,} pixels, over the "
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
        raise ImageLoadError(f"{context}{_describe(ref)}: {error}") from error


class _Entry(NamedTuple):
    image: Image.Image
    nbytes: int
    original_size: Size  # of the original the entry shows (a view's source)


# View entries live beside the originals under ``(_VIEW, key, budget, how)``; no caller key equals that.
_VIEW = object()


class ImageStore:
    """A byte-bounded LRU cache of decoded images and their views, keyed by the caller (e.g. sample id).

    Example:
        >>> from PIL import Image
        >>> store = ImageStore(max_bytes=10_000_000)
        >>> a = store.get("s1", lambda: Image.new("RGB", (100, 50)))
        >>> b = store.get("s1", lambda: Image.new("RGB", (1, 1)))  # cached: not called
        >>> a is b, store.decodes, store.cached_bytes
        (True, 1, 15000)
        >>> view, size = store.view("s1", None, ImageBudget(min_pixels=28 * 28, max_pixels=56 * 56))
        >>> view.size, size, store.views_made
        ((56, 28), (100, 50), 1)
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        draft_views: bool = True,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.max_image_pixels = int(max_image_pixels)
        self.draft_views = bool(draft_views)
        self._items: "OrderedDict[Hashable, _Entry]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.decodes = 0  # how many times an image was really decoded (for tests and benchmarks)
        self.draft_decodes = 0  # reduced-size JPEG decodes made for a view alone
        self.views_made = 0  # how many times a view was computed (not served from the cache)

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded pixels the cache holds now (originals and views)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _lookup(self, key: Hashable) -> Optional[_Entry]:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def get(self, key: Hashable, ref: ImageRef, *, context: str = "") -> Image.Image:
        """The decoded image for ``key``, decoding ``ref`` only on a miss."""
        entry = self._lookup(key)
        if entry is not None:
            return entry.image
        image = decode_image(ref, max_image_pixels=self.max_image_pixels, context=context)
        self.decodes += 1
        self.put(key, image)
        return image

    def view(
        self,
        key: Hashable,
        ref: ImageRef,
        budget: ImageBudget,
        *,
        context: str = "",
        need_original: bool = True,
    ) -> tuple[Image.Image, Size]:
        """The whole original shrunk to ``budget.view_size``, and the original's (width, height).

        Cached per ``(key, budget)``, so the G resets of a group compute it once. The
        view is :func:`~mgpo_env.image_budget.resize_region` of the full decode. With
        ``need_original=False`` (the caller will not crop) and neither the view nor the
        original cached, a JPEG file's view comes from a reduced-size decode instead
        (``draft_views``); that view is kept apart, so a caller that crops never gets it.
        """
        full_key = (_VIEW, key, budget, "full")
        draft_key = (_VIEW, key, budget, "draft")
        for view_key in (full_key,) if need_original else (full_key, draft_key):
            entry = self._lookup(view_key)
            if entry is not None:
                return entry.image, entry.original_size
        if not need_original and self.draft_views and self._lookup(key) is None:
            drafted = self._draft_view(ref, budget, context)
            if drafted is not None:
                view, size = drafted
                self.views_made += 1
                self._put(draft_key, view, size)
                return view, size
        original = self.get(key, ref, context=context)
        size = (original.width, original.height)
        view = resize_region(original, (0, 0) + size, budget.view_size(size))  # may be `original` itself
        self.views_made += 1
        self._put(full_key, view, size)
        return view, size

    def _draft_view(self, ref: ImageRef, budget: ImageBudget, context: str) -> Optional[tuple[Image.Image, Size]]:
        """The view from the JPEG codec's reduced-size decode, or None where that does not apply."""
        if not isinstance(ref, (str, Path, bytes, bytearray)):
            return None
        try:
            with _pillow_limit_lifted(), _open(ref) as image:
                if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                    return None
                size = image.size
                if size[0] * size[1] > self.max_image_pixels:
                    return None  # the full path raises the explanatory error
                target = budget.view_size(size)
                image.draft("RGB", target)  # the largest codec scaling that stays >= target
                if image.size == size:
                    return None  # no reduction possible: the full decode is no slower
                image.load()
            if image.mode != "RGB":
                image = image.convert("RGB")
            view = resize_region(image, (0, 0) + image.size, target, fast=True)
        except (OSError, UnidentifiedImageError, TypeError, ValueError, SyntaxError) as error:
            raise ImageLoadError(f"{context}{_describe(ref)}: {error}") from error
        self.draft_decodes += 1
        return view, size

    def put(self, key: Hashable, image: Image.Image) -> None:
        """Insert an image, evicting the least recently used ones beyond ``max_bytes``."""
        self._put(key, image, image.size)

    def _put(self, key: Hashable, image: Image.Image, original_size: Size) -> None:
        size = _nbytes(image)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key).nbytes
            if size > self.max_bytes:
                return  # larger than the whole cache: use it once, keep nothing
            self._items[key] = _Entry(image, size, (int(original_size[0]), int(original_size[1])))
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes

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

