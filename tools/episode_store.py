"""The episode store: a folder of finished episodes, kept on disk for reports and debugging.

:class:`EpisodeStore` appends :class:`~mgpo_tools.episode_record.EpisodeRecord`
objects to a folder and reads them back exactly; the records themselves are built
from an environment by :mod:`mgpo_tools.recording` (``record_from_env``,
``RecordEpisodes``, ``play_episodes``). This module is only the folder:
its layout, deduplicated images, crash-safe appends and sampling.

Layout of a store (``RUN_DIR/episodes/`` by convention; ``mgpo report RUN_DIR`` reads it)::

    episodes/
      store.json              {"format": "mgpo-episodes", "version": 1}
      episodes.jsonl          one EpisodeRecord as JSON per line, in the order added
      images/
        3f/3f9a...e1.png      every image once, as PNG, named by the SHA-256 of its pixels

* ``episodes.jsonl`` lines are :meth:`~mgpo_tools.episode_record.EpisodeRecord.to_dict` (see that class for
  the fields). Images are referenced by hash (``StoredImage.sha256``), never inlined.
* An image's name is ``sha256(b"<mode> <width>x<height>\\n" + raw pixel bytes)``, so
  identical pixels are written once however often they are shown (a GRPO group
  shows the same downsized original G times; an evaluation of several
  checkpoints shows the same originals again) and the name does not depend on
  the PNG encoder. PNG is lossless: a reloaded image equals the one the model saw,
  pixel for pixel.
* The original is kept as a *thumbnail* (longer side at most the env's
  ``render_max_side``, 1024 by default), made with the very resize
  ``env.render()`` uses, so drawing the record's boxes on it with
  :func:`mgpo_env.rendering.draw_boxes` reproduces ``env.render()`` exactly. The
  full-resolution original stays in the dataset; the views and crops the model
  saw are stored at their exact size.

Crash safety: an image is written to a temporary file, flushed, ``fsync``-ed and
renamed into place *before* the line that refers to it is appended, and each
line is appended with a single ``write`` on an ``O_APPEND`` descriptor and then
``fsync``-ed. A crash therefore loses at most the episode being written; a torn
last line is skipped with a warning when reading, and the next append first
ends that torn line so it cannot swallow the new record.

Training runs store a sample of their rollouts: ``EpisodeStore(root,
every_n_steps=10)`` keeps ``split="train"`` records only from steps divisible by
10 (``store.wants("train", step)`` lets the trainer skip building the others).

Example:
    >>> import tempfile, gymnasium as gym, mgpo_env
    >>> from mgpo_tools.recording import record_from_env
    >>> env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512})
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = EpisodeStore(folder.name)
    >>> _ = env.reset(seed=0)
    >>> _ = env.step("[0, 0, 200, 200]"); _ = env.step("\\\\boxed{A}")
    >>> store.add(record_from_env(env))
    True
    >>> [r.groundings[0].crop_box for r in store.load()]
    [(0, 0, 204, 204)]
    >>> folder.cleanup()
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Optional, Union

from PIL import Image

from .episode_record import FORMAT_VERSION, EpisodeRecord, StoredImage

__all__ = [
    "EPISODES_FILE",
    "FORMAT_NAME",
    "IMAGES_DIR",
    "META_FILE",
    "EpisodeStore",
    "StoreWarning",
]

FORMAT_NAME = "mgpo-episodes"
EPISODES_FILE = "episodes.jsonl"
IMAGES_DIR = "images"
META_FILE = "store.json"


class StoreWarning(UserWarning):
    """A line of ``episodes.jsonl`` could not be read (e.g. torn by a crash) and was skipped."""


class EpisodeStore:
    """A folder of episodes: ``episodes.jsonl`` plus images stored once by hash.

    Args:
        root: the folder (created if missing).
        every_n_steps: keep ``split="train"`` records only from steps divisible by
            this (``None``: keep all). Other splits are always kept.
        max_per_step: keep at most this many ``split="train"`` records per step
            (the first ones added; counted in this process).
        fsync: ``fsync`` every image and line (durable across power loss; a few
            milliseconds per episode). Turn off only for throwaway stores.
    """

    def __init__(self, root: Union[str, Path], *, every_n_steps: Optional[int] = None, max_per_step: Optional[int] = None, fsync: bool = True) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        if max_per_step is not None and max_per_step < 0:
            raise ValueError(f"max_per_step must be >= 0 or None, got {max_per_step}")
        self.root = Path(root)
        self.every_n_steps = every_n_steps
        self.max_per_step = max_per_step
        self.fsync = fsync
        self.images_written = 0  # images encoded and written by this object
        self.images_reused = 0  # images already present (deduplicated)
        self._per_step: dict[int, int] = {}
        self._sealed = False  # whether a torn last line was checked for before appending

    @property
    def episodes_path(self) -> Path:
        return self.root / EPISODES_FILE

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    def exists(self) -> bool:
        return self.episodes_path.is_file()

    # ------------------------------------------------------------------ writing
    def wants(self, split: str, step: Optional[int]) -> bool:
        """Whether a record of ``split`` at ``step`` would be kept (check before building one)."""
        if split != "train" or step is None:
            return True
        if self.every_n_steps is not None and step % self.every_n_steps != 0:
            return False
        if self.max_per_step is not None and self._per_step.get(step, 0) >= self.max_per_step:
            return False
        return True

    def add(self, record: EpisodeRecord) -> bool:
        """Write the record's new images, then append its line. Returns False if ``every_n_steps``
        or ``max_per_step`` dropped it."""
        if not self.wants(record.split, record.step):
            return False
        self._ensure_layout()
        for entry in (record.original, *record.images):
            if not self.image_path(entry.sha256).is_file():
                image = record.pixels.get(entry.sha256)
                if image is None:
                    raise ValueError(f"episode {record.episode_id}: image {entry.sha256} is neither in the record's pixels nor in {self.images_dir}")
                self._write_image(entry.sha256, image)
            else:
                self.images_reused += 1
        line = (json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        self._append(line)
        if record.split == "train" and record.step is not None:
            self._per_step[record.step] = self._per_step.get(record.step, 0) + 1
        return True

    def _ensure_layout(self) -> None:
        self.images_dir.mkdir(parents=True, exist_ok=True)
        meta = self.root / META_FILE
        if not meta.exists():
            _atomic_write(meta, json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode() + b"\n", fsync=self.fsync)

    def image_path(self, sha256: str) -> Path:
        return self.images_dir / sha256[:2] / f"{sha256}.png"

    def _write_image(self, sha256: str, image: Image.Image) -> None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=6)
        path = self.image_path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same name, same pixels: if another writer wins the race, its file is as good as ours.
        _atomic_write(path, buffer.getvalue(), fsync=self.fsync)
        self.images_written += 1

    def _append(self, line: bytes) -> None:
        fd = os.open(self.episodes_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if not self._sealed:
                # A crash may have left a torn last line without its newline; end it, or
                # our record would be glued to it and lost with it.
                size = os.fstat(fd).st_size
                if size > 0:
                    with open(self.episodes_path, "rb") as f:
                        f.seek(size - 1)
                        if f.read(1) != b"\n":
                            line = b"\n" + line
                self._sealed = True
            # One write on an O_APPEND descriptor: concurrent writers do not interleave lines.
            written = os.write(fd, line)
            while written < len(line):  # regular files practically never write short, but be correct
                written += os.write(fd, line[written:])
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ reading
    def iter_records(self) -> Iterator[EpisodeRecord]:
        """Records in the order they were added, streamed. Unreadable lines (a line
        torn by a crash) are skipped with a :class:`StoreWarning` naming the line."""
        if not self.exists():
            return
        with open(self.episodes_path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    yield EpisodeRecord.from_dict(json.loads(raw.decode("utf-8")))
                except (ValueError, KeyError, TypeError, IndexError) as error:
                    torn = "" if raw.endswith(b"\n") else " (no newline: torn by a crash?)"
                    warnings.warn(f"{self.episodes_path}:{number}: skipped an unreadable episode line{torn}: {error}", StoreWarning, stacklevel=2)

    def load(self) -> list[EpisodeRecord]:
        """All records (see :meth:`iter_records`)."""
        return list(self.iter_records())

    def __len__(self) -> int:
        return sum(1 for _ in self.iter_records())

    def open_image(self, image: Union[str, StoredImage]) -> Image.Image:
        """The pixels of a stored image (by hash or :class:`StoredImage`), fully loaded."""
        sha = image.sha256 if isinstance(image, StoredImage) else image
        with Image.open(self.image_path(sha)) as opened:
            opened.load()
            return opened.copy()


def _atomic_write(path: Path, data: bytes, *, fsync: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


