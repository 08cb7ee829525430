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

Decoding and its typed errors are :mod:`mgpo_datasets.image_files`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Hashable, NamedTuple, Optional

from PIL import Image, UnidentifiedImageError

from mgpo_datasets.image_files import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageLoadError,
    decode_image,
    describe_ref,
    open_image,
    pillow_limit_lifted,
)
from mgpo_datasets.sample import ImageRef

from .geometry import Size
from .image_budget import ImageBudget, resize_region

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


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
        self._making: dict[Hashable, threading.Lock] = {}  # one lock per key being made: a miss is made once
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
        with self._making_lock(key):  # concurrent misses (sessions of a server) wait for one decode
            entry = self._lookup(key)
            if entry is not None:
                return entry.image
            image = decode_image(ref, max_image_pixels=self.max_image_pixels, context=context)
            self.decodes += 1
            self.put(key, image)
        self._made(key)
        return image

    def _making_lock(self, key: Hashable) -> threading.Lock:
        with self._lock:
            return self._making.setdefault(key, threading.Lock())

    def _made(self, key: Hashable) -> None:
        with self._lock:
            self._making.pop(key, None)

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
        with self._making_lock(full_key):  # concurrent misses wait for one view
            made = self._make_view(key, ref, budget, context, need_original, full_key, draft_key)
        self._made(full_key)
        return made

    def _make_view(
        self, key: Hashable, ref: ImageRef, budget: ImageBudget, context: str, need_original: bool, full_key: Hashable, draft_key: Hashable
    ) -> tuple[Image.Image, Size]:
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
            with pillow_limit_lifted(), open_image(ref) as image:
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
            raise ImageLoadError(f"{context}{describe_ref(ref)}: {error}") from error
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
