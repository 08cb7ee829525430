"""What one stored episode is: :class:`EpisodeRecord` and its parts, and their JSON form.

An :class:`EpisodeRecord` is everything about one episode of ``mgpo/HighResVQA-v0``
that a person needs to judge it later: the sample (id, question, options, gold
answer, category, annotated boxes), the conversation (roles, texts, and which
image sits where), the model's replies, every grounding (the box as written in
the pixels of the image the model saw, that frame's size, the crop box in
original pixels, valid or not and why), the images the model was shown, the
reward and the parsed answer, and the labelled boxes ``env.render()`` draws.

This module is the format only, kept apart from where records come from
(:mod:`mgpo_tools.recording` builds them from a live environment) and where they
go (:mod:`mgpo_tools.episode_store` keeps them on disk), so that readers of stored
runs such as the report need neither. :meth:`EpisodeRecord.to_dict` is one line of
a store's ``episodes.jsonl`` and :meth:`EpisodeRecord.from_dict` reads it back
exactly. Images are never inlined: a :class:`StoredImage` names its pixels by
:func:`image_hash`, which depends on the pixels alone, not on any file format.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from PIL import Image

from mgpo_env.geometry import Box, IntBox, Size
from mgpo_env.rendering import LabelledBox

FORMAT_VERSION = 1  # of a record and of a store's layout (store.json)
IMAGE_MARKER = "<image>"

ImageKind = str  # "original" (whole image, downsized), "crop", or "thumbnail" (the stored original)

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

    @classmethod
    def from_values(
        cls, turn: Any, model_image_size: Sequence[Any], view_box: Optional[Sequence[Any]], crop_box: Optional[Sequence[Any]], valid: Any, error: Optional[str]
    ) -> "GroundingEntry":
        """An entry of plain ints, floats and tuples, whether the values come from JSON lists or from the env.

        One conversion for reading and for recording, so a record equals its reloaded copy.
        """
        return cls(int(turn), _size(model_image_size), None if view_box is None else _box(view_box), None if crop_box is None else _int_box(crop_box), bool(valid), error)


@dataclass(frozen=True)
class Overlay:
    """A labelled box in original pixels, as :meth:`HighResVQAEnv.box_overlays` gives it."""

    box: Box
    color: tuple[int, int, int]
    label: Optional[str]

    @classmethod
    def from_values(cls, box: Sequence[Any], color: Sequence[Any], label: Optional[str]) -> "Overlay":
        """An overlay of plain floats and ints (see :meth:`GroundingEntry.from_values`)."""
        return cls(_box(box), _color(color), label)

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
    :attr:`pixels` (hash -> ``PIL.Image``) until :meth:`~mgpo_tools.episode_store.EpisodeStore.add` writes
    them, and are read back with :meth:`~mgpo_tools.episode_store.EpisodeStore.open_image`. ``pixels`` is
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
        return jsonable(data)

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
                GroundingEntry.from_values(g["turn"], g["model_image_size"], g.get("view_box"), g.get("crop_box"), g["valid"], g.get("error"))
                for g in data["groundings"]
            ),
            images=tuple(_stored_image(i) for i in data["images"]),
            original=_stored_image(data["original"]),
            overlays=tuple(Overlay.from_values(o["box"], o["color"], o.get("label")) for o in data["overlays"]),
            done=bool(data["done"]),
            reward=float(data["reward"]),
            correct=None if data.get("correct") is None else bool(data["correct"]),
            parsed_answer=data.get("parsed_answer"),
            extra=dict(data.get("extra") or {}),
        )


def jsonable(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars to plain JSON types (what ``extra`` and :meth:`EpisodeRecord.to_dict` hold)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
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

