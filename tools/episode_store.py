"""Stored episodes: what the model saw and said, kept on disk for reports and debugging.

An :class:`EpisodeRecord` is everything about one episode of ``mgpo/HighResVQA-v0``
that a person needs to judge it later: the sample (id, question, options, gold
answer, category, annotated boxes), the conversation (roles, texts, and which
image sits where), the model's replies, every grounding (the box as written in
the pixels of the image the model saw, that frame's size, the crop box in
original pixels, valid or not and why), the images the model was shown, the
reward and the parsed answer, and the labelled boxes ``env.render()`` draws.

:func:`record_from_env` builds one from an environment, through its public
accessors only. :class:`EpisodeStore` appends records to a folder and reads them
back exactly.

Layout of a store (``RUN_DIR/episodes/`` by convention; ``mgpo report RUN_DIR`` reads it)::

    episodes/
      store.json              {"format": "mgpo-episodes", "version": 1}
      episodes.jsonl          one EpisodeRecord as JSON per line, in the order added
      images/
        3f/3f9a...e1.png      every image once, as PNG, named by the SHA-256 of its pixels

* ``episodes.jsonl`` lines are :meth:`EpisodeRecord.to_dict` (see that class for
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

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import gymnasium as gym
from PIL import Image

from mgpo_env.geometry import Box, IntBox, Size
from mgpo_env.grading import grade
from mgpo_env.rendering import LabelledBox, draw_boxes

FORMAT_NAME = "mgpo-episodes"
FORMAT_VERSION = 1
EPISODES_FILE = "episodes.jsonl"
IMAGES_DIR = "images"
META_FILE = "store.json"
IMAGE_MARKER = "<image>"

ImageKind = str  # "original" (whole image, downsized), "crop", or "thumbnail" (the stored original)


class StoreWarning(UserWarning):
    """A line of ``episodes.jsonl`` could not be read (e.g. torn by a crash) and was skipped."""


# --------------------------------------------------------------------- records
@dataclass(frozen=True)
class StoredImage:
    """An image of an episode, referenced by the hash of its pixels."""

    sha256: str
    width: int
    height: int
    kind: ImageKind  # "original": the whole image as the model saw it; "crop"; "thumbnail"
    region: Box  # the part of the original it shows, in original pixels
    turn: int  # shown after this many model replies (0: in the first prompt)

    @property
    def size(self) -> Size:
        return (self.width, self.height)


@dataclass(frozen=True)
class ContentPart:
    """One part of a chat message: ``type="text"`` with ``text``, or ``type="image"``
    with ``image``, an index into :attr:`EpisodeRecord.images`."""

    type: str
    text: Optional[str] = None
    image: Optional[int] = None


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: tuple[ContentPart, ...]

    def text(self) -> str:
        """The message as text, ``<image>`` where an image sits (as the observation's ``history``)."""
        return "".join(IMAGE_MARKER if part.type == "image" else (part.text or "") for part in self.content)


@dataclass(frozen=True)
class GroundingEntry:
    """A grounding reply (mirrors :class:`mgpo_env.highres_vqa.GroundingRecord`)."""

    turn: int
    model_image_size: Size  # the frame the box was written in
    view_box: Optional[Box]  # the parsed box in that frame's pixels (None: no box found)
    crop_box: Optional[IntBox]  # original pixels; None when missing or invalid
    valid: bool
    error: Optional[str]


@dataclass(frozen=True)
class Overlay:
    """A labelled box in original pixels, as :meth:`HighResVQAEnv.box_overlays` gives it."""

    box: Box
    color: tuple[int, int, int]
    label: Optional[str]

    def labelled_box(self, scale: tuple[float, float] = (1.0, 1.0)) -> LabelledBox:
        """The box for :func:`~mgpo_env.rendering.draw_boxes`, scaled by ``(sx, sy)``."""
        sx, sy = scale
        x1, y1, x2, y2 = self.box
        if (sx, sy) != (1.0, 1.0):
            x1, y1, x2, y2 = x1 * sx, y1 * sy, x2 * sx, y2 * sy
        return LabelledBox((x1, y1, x2, y2), self.color, self.label)


@dataclass
class EpisodeRecord:
    """One episode, as stored in a line of ``episodes.jsonl``.

    Images are :class:`StoredImage` references; their pixels travel in
    :attr:`pixels` (hash -> ``PIL.Image``) until :meth:`EpisodeStore.add` writes
    them, and are read back with :meth:`EpisodeStore.open_image`. ``pixels`` is
    not part of equality: a record equals its reloaded copy.
    """

    episode_id: str
    split: str  # "eval", "train", ...
    step: Optional[int]  # the training step (None outside training)
    created: float  # unix time the record was made
    sample_id: str
    question: str
    choices: tuple[str, ...]
    answer: str  # the gold answer (an option letter when there are choices)
    category: Optional[str]
    target_boxes: tuple[Box, ...]  # annotated boxes, original pixels
    original_size: Size
    protocol: str
    box_frame: str
    messages: tuple[ChatMessage, ...]
    generations: tuple[str, ...]  # the model's replies in order
    groundings: tuple[GroundingEntry, ...]
    images: tuple[StoredImage, ...]  # the images of the conversation, in order
    original: StoredImage  # the original's thumbnail (kind "thumbnail")
    overlays: tuple[Overlay, ...]  # what env.render() draws: annotated and predicted boxes
    done: bool
    reward: float
    correct: Optional[bool]  # None while the episode runs
    parsed_answer: Optional[str]
    extra: dict[str, Any] = field(default_factory=dict)  # anything JSON-serialisable the caller adds
    pixels: dict[str, Image.Image] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------ derived views
    @property
    def box_valid(self) -> Optional[bool]:
        """Whether the last grounding was valid (``info["box_valid"]``); None without any grounding."""
        return self.groundings[-1].valid if self.groundings else None

    @property
    def crops(self) -> list[StoredImage]:
        return [image for image in self.images if image.kind == "crop"]

    def overlays_for(self, size: Size) -> list[LabelledBox]:
        """The overlays scaled from original pixels to an image of ``size`` (e.g. the thumbnail)."""
        scale = (size[0] / self.original_size[0], size[1] / self.original_size[1])
        return [overlay.labelled_box(scale) for overlay in self.overlays]

    def transcript(self) -> str:
        """The conversation as plain text, the same as ``env.unwrapped.transcript()`` gave."""
        lines = []
        for message in self.messages:
            text = "".join(
                f"<image {self.images[p.image].width}x{self.images[p.image].height} {self.images[p.image].kind}>\n"  # type: ignore[index]
                if p.type == "image"
                else (p.text or "")
                for p in message.content
            )
            lines.append(f"[{message.role}]\n{text}")
        if self.done:
            lines.append(f"[result] answer={self.parsed_answer!r} correct={self.correct}")
        return "\n\n".join(lines) + "\n"

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); :meth:`from_dict` inverts it exactly."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "pixels"}
        data["version"] = FORMAT_VERSION
        return _jsonable(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EpisodeRecord":
        version = data.get("version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"episode record version {version} is newer than this code reads ({FORMAT_VERSION}); upgrade mgpo")
        return cls(
            episode_id=str(data["episode_id"]),
            split=str(data["split"]),
            step=_opt_int(data.get("step")),
            created=float(data["created"]),
            sample_id=str(data["sample_id"]),
            question=str(data["question"]),
            choices=tuple(str(c) for c in data["choices"]),
            answer=str(data["answer"]),
            category=data.get("category"),
            target_boxes=tuple(_box(b) for b in data["target_boxes"]),
            original_size=_size(data["original_size"]),
            protocol=str(data["protocol"]),
            box_frame=str(data["box_frame"]),
            messages=tuple(
                ChatMessage(str(m["role"]), tuple(ContentPart(str(p["type"]), p.get("text"), _opt_int(p.get("image"))) for p in m["content"]))
                for m in data["messages"]
            ),
            generations=tuple(str(g) for g in data["generations"]),
            groundings=tuple(
                GroundingEntry(
                    turn=int(g["turn"]),
                    model_image_size=_size(g["model_image_size"]),
                    view_box=None if g.get("view_box") is None else _box(g["view_box"]),
                    crop_box=None if g.get("crop_box") is None else _int_box(g["crop_box"]),
                    valid=bool(g["valid"]),
                    error=g.get("error"),
                )
                for g in data["groundings"]
            ),
            images=tuple(_stored_image(i) for i in data["images"]),
            original=_stored_image(data["original"]),
            overlays=tuple(Overlay(_box(o["box"]), _color(o["color"]), o.get("label")) for o in data["overlays"]),
            done=bool(data["done"]),
            reward=float(data["reward"]),
            correct=None if data.get("correct") is None else bool(data["correct"]),
            parsed_answer=data.get("parsed_answer"),
            extra=dict(data.get("extra") or {}),
        )


def _jsonable(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars to plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def _box(values: Sequence[Any]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _int_box(values: Sequence[Any]) -> IntBox:
    x1, y1, x2, y2 = (int(v) for v in values)
    return (x1, y1, x2, y2)


def _size(values: Sequence[Any]) -> Size:
    return (int(values[0]), int(values[1]))


def _color(values: Sequence[Any]) -> tuple[int, int, int]:
    return (int(values[0]), int(values[1]), int(values[2]))


def _stored_image(data: Mapping[str, Any]) -> StoredImage:
    return StoredImage(str(data["sha256"]), int(data["width"]), int(data["height"]), str(data["kind"]), _box(data["region"]), int(data["turn"]))


def image_hash(image: Image.Image) -> str:
    """SHA-256 of an image's pixels (mode and size included), independent of any file format."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _normalise_mode(image: Image.Image) -> Image.Image:
    # PNG stores these modes losslessly; anything else (palette, CMYK, 16-bit) is shown to people as RGB anyway.
    return image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")


# ------------------------------------------------------------- from the env
def record_from_env(
    env: gym.Env,
    *,
    step: Optional[int] = None,
    split: str = "eval",
    extra: Optional[Mapping[str, Any]] = None,
    info: Optional[Mapping[str, Any]] = None,
    reward: Optional[float] = None,
    thumbnail_max_side: Optional[int] = None,
) -> EpisodeRecord:
    """Build an :class:`EpisodeRecord` from the episode ``env`` is playing or has finished.

    Args:
        env: a ``mgpo/HighResVQA-v0`` environment (wrapped or not) after ``reset``.
        step: the training step (``None`` in evaluation).
        split: ``"eval"``, ``"train"``, or any label the report should filter on.
        extra: JSON-serialisable data to keep with the record (e.g. the checkpoint,
            the policy's log-probabilities). Normalised through JSON now, so the
            record equals its reloaded copy (tuples become lists).
        info: the last ``info`` from ``step``; when given, its ``answer`` and
            ``correct`` are used. Without it the final reply is graded again with
            :func:`mgpo_env.grading.grade`, the function the environment uses.
        reward: the reward to record; by default the environment's binary reward
            (1.0 if correct) once the episode is over, else 0.0.
        thumbnail_max_side: longer side of the stored original; defaults to the
            env's ``render_max_side`` so the report reproduces ``env.render()``.
    """
    base = env.unwrapped
    sample = base.sample
    if sample is None:
        raise RuntimeError("record_from_env() before reset(): there is no episode to record")
    chat = base.chat_messages()
    groundings = base.groundings
    by_turn = {g.turn: g for g in groundings}
    original = base.images.get(sample.sample_id, sample.image, context=f"sample {sample.sample_id!r}: ")
    original_size: Size = (int(original.width), int(original.height))
    full: Box = (0.0, 0.0, float(original_size[0]), float(original_size[1]))

    pixels: dict[str, Image.Image] = {}

    def keep(image: Image.Image, kind: str, region: Box, turn: int) -> StoredImage:
        image = _normalise_mode(image)
        sha = image_hash(image)
        pixels[sha] = image
        return StoredImage(sha, image.width, image.height, kind, tuple(float(v) for v in region), turn)  # type: ignore[arg-type]

    images: list[StoredImage] = []
    messages: list[ChatMessage] = []
    generations: list[str] = []
    replies = 0
    for message in chat:
        parts: list[ContentPart] = []
        for item in message["content"]:
            if item["type"] == "image":
                # The env's protocol: the image that follows reply t is a crop exactly when
                # grounding t was valid; otherwise (and in the first prompt) it is the whole
                # image again. Judging by the protocol, not by object identity, stays right
                # even when a crop of the whole image is the very same PIL object.
                grounding = by_turn.get(replies)
                if replies > 0 and grounding is not None and grounding.valid and grounding.crop_box is not None:
                    entry = keep(item["image"], "crop", tuple(float(v) for v in grounding.crop_box), replies)  # type: ignore[arg-type]
                else:
                    entry = keep(item["image"], "original", full, replies)
                parts.append(ContentPart("image", image=len(images)))
                images.append(entry)
            else:
                parts.append(ContentPart("text", text=str(item["text"])))
        messages.append(ChatMessage(str(message["role"]), tuple(parts)))
        if message["role"] == "assistant":
            replies += 1
            generations.append("".join(p.text or "" for p in parts))

    # A grounding reply is always followed by the env's user message and the answer by
    # nothing, so the episode is over exactly when the model spoke last (the env has no
    # public "done" accessor).
    done = bool(messages) and messages[-1].role == "assistant"
    choices = tuple(sample.choices)
    if info is not None and info.get("correct") is not None:
        correct: Optional[bool] = bool(info["correct"])
        parsed = info.get("answer")
        done = True
    elif done:
        result = grade(generations[-1], sample.answer, choices or None)
        correct, parsed = result.correct, result.answer
    else:
        correct, parsed = None, None
    if reward is None:
        reward = 1.0 if correct else 0.0

    side = thumbnail_max_side or int(getattr(base, "render_max_side", 1024) or 1024)
    # draw_boxes with no boxes *is* render()'s resize, so boxes drawn later on this
    # thumbnail give render()'s picture pixel for pixel.
    thumbnail = keep(draw_boxes(original, [], max_side=side), "thumbnail", full, 0)

    return EpisodeRecord(
        episode_id=uuid.uuid4().hex,
        split=str(split),
        step=None if step is None else int(step),
        created=time.time(),
        sample_id=sample.sample_id,
        question=sample.question,
        choices=choices,
        answer=sample.answer,
        category=sample.category,
        target_boxes=tuple(tuple(float(v) for v in box) for box in sample.target_boxes),  # type: ignore[misc]
        original_size=original_size,
        protocol=str(base.protocol),
        box_frame=str(base.box_frame),
        messages=tuple(messages),
        generations=tuple(generations),
        groundings=tuple(
            GroundingEntry(
                turn=int(g.turn),
                model_image_size=_size(g.model_image_size),
                view_box=None if g.view_box is None else _box(g.view_box),
                crop_box=None if g.crop_box is None else _int_box(g.crop_box),
                valid=bool(g.valid),
                error=g.error,
            )
            for g in groundings
        ),
        images=tuple(images),
        original=thumbnail,
        overlays=tuple(Overlay(_box(o.box), _color(o.color), o.label) for o in base.box_overlays()),
        done=done,
        reward=float(reward),
        correct=correct,
        parsed_answer=None if parsed is None else str(parsed),
        extra=json.loads(json.dumps(_jsonable(dict(extra or {})))),
        pixels=pixels,
    )


# ------------------------------------------------------------------- the store
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


# ---------------------------------------------------------- evaluation loops
class RecordEpisodes(gym.Wrapper):
    """Save every finished episode of the wrapped env to ``store`` (an evaluation loop's recorder).

    Example::

        env = RecordEpisodes(gym.make("mgpo/HighResVQA-v0"), EpisodeStore("runs/x/episodes"), split="eval")
        # ... play as usual; each episode is stored when it terminates or is truncated.

    Args:
        env: the environment to wrap.
        store: where to write.
        split, training_step: passed to :func:`record_from_env` (``training_step`` as ``step``).
        extra: a dict, or a callable ``extra(info) -> dict``, kept with each record.
    """

    def __init__(
        self,
        env: gym.Env,
        store: EpisodeStore,
        *,
        split: str = "eval",
        training_step: Optional[int] = None,
        extra: Union[Mapping[str, Any], Callable[[Mapping[str, Any]], Mapping[str, Any]], None] = None,
    ) -> None:
        super().__init__(env)
        self.store = store
        self.split = split
        self.training_step = training_step
        self.extra = extra
        self.records: list[EpisodeRecord] = []  # the records written, in order (without their pixels)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if (terminated or truncated) and self.store.wants(self.split, self.training_step):
            extra = self.extra(info) if callable(self.extra) else self.extra
            record = record_from_env(self.env, step=self.training_step, split=self.split, extra=extra, info=info, reward=float(reward))
            if self.store.add(record):
                record.pixels = {}  # the store has them; do not hold thousands of images in memory
                self.records.append(record)
        return observation, reward, terminated, truncated, info


def play_episodes(
    env: gym.Env,
    policy: Callable[[Mapping[str, Any], Mapping[str, Any]], str],
    store: EpisodeStore,
    *,
    episodes: int,
    seed: Optional[int] = 0,
    split: str = "eval",
    step: Optional[int] = None,
    extra: Optional[Mapping[str, Any]] = None,
    reset_options: Optional[Callable[[int], Optional[dict[str, Any]]]] = None,
) -> list[EpisodeRecord]:
    """Play ``episodes`` episodes with ``policy(observation, info) -> str`` and store each one.

    Episode ``k`` is reset with ``seed + k`` (or unseeded when ``seed`` is None) and
    ``reset_options(k)`` when given (e.g. ``lambda k: {"index": k}`` to visit a
    dataset in order). Returns the stored records (without their pixels).
    """
    recorder = RecordEpisodes(env, store, split=split, training_step=step, extra=extra)
    for k in range(episodes):
        observation, info = recorder.reset(seed=None if seed is None else seed + k, options=reset_options(k) if reset_options else None)
        terminated = truncated = False
        while not (terminated or truncated):
            observation, _, terminated, truncated, info = recorder.step(policy(observation, info))
    return recorder.records

