"""What the server and the client exchange: OpenEnv action, observation and state models.

Images travel as encoded bytes (base64 in the JSON): JPEG by default, PNG when the
client needs the exact pixels (training through the server). An observation carries
only the images that are new since the session's previous observation; the client
keeps the episode's list. ``info`` goes through JSON, which turns tuples into lists:
:func:`info_from_wire` gives them back, so a remote ``info`` equals the local one.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from typing import Any, Literal, Mapping, Optional

from openenv.core.env_server.types import Action, Observation, State
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

IMAGE_FORMATS = ("jpeg", "png")
DEFAULT_JPEG_QUALITY = 90
# zlib level 1: about 3x faster than the default 6 on camera images, still lossless.
PNG_COMPRESS_LEVEL = 1
# Info values that are tuples in the local environment (lists after JSON).
TUPLE_INFO_KEYS = ("original_image_size", "model_image_size", "target_box", "crop_box")
TUPLE_LIST_INFO_KEYS = ("target_boxes",)


class HighResVQAAction(Action):
    """The model's reply, as text (the environment parses a box or an answer from it)."""

    message: str = Field(description="The model's reply")


class EncodedImage(BaseModel):
    """One image of the conversation, encoded as the model sees it (its size is the model's)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, description="Position among the episode's images")
    format: Literal["jpeg", "png"]
    data: str = Field(description="The encoded file, base64")
    width: int
    height: int

    def to_bytes(self) -> bytes:
        return base64.b64decode(self.data)

    def to_pil(self) -> Image.Image:
        """The decoded image, RGB."""
        image = Image.open(io.BytesIO(self.to_bytes()))
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")


class HighResVQAObservation(Observation):
    """One observation: the conversation so far, the new images, the info; ``reward`` and ``done`` as OpenEnv has them."""

    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Chat messages; an image part is {'type': 'image', 'index': i} into the episode's images",
    )
    images: list[EncodedImage] = Field(default_factory=list, description="The images new since the previous observation")
    history: list[dict[str, str]] = Field(default_factory=list, description="{'role', 'content'} with '<image>' markers")
    turn: int = 0
    info: dict[str, Any] = Field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False


class HighResVQAState(State):
    """The session's episode and the environment options the server fixed."""

    env_id: str = "mgpo/HighResVQA-v0"
    dataset: str = ""
    dataset_size: int = 0
    protocol: str = ""
    max_turns: int = 0
    min_pixels: int = 0
    max_pixels: int = 0
    box_frame: str = ""
    observation_image_shape: tuple[int, int] = (0, 0)
    image_format: str = "jpeg"
    max_action_bytes: int = 0


def encode_image(image: Image.Image, image_format: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """``image`` as a JPEG or PNG file (deterministic: the same image gives the same bytes)."""
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=int(jpeg_quality))
    elif image_format == "png":
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        raise ValueError(f"image_format={image_format!r}; choose one of {IMAGE_FORMATS}")
    return buffer.getvalue()


class EncodingCache:
    """The last few images' encodings, by image object: the G episodes of a group show one view, encoded once.

    Thread-safe (a server's sessions share one). An entry keeps its image alive, so an ``id``
    is never reused by another image while it is cached.
    """

    def __init__(self, max_items: int = 16) -> None:
        self.max_items = int(max_items)
        self._items: "OrderedDict[tuple[int, str, int], tuple[Image.Image, str]]" = OrderedDict()
        self._lock = threading.Lock()
        self.encodes = 0

    def base64(self, image: Image.Image, image_format: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> str:
        """``image`` encoded, as base64 text."""
        key = (id(image), image_format, int(jpeg_quality))
        with self._lock:
            cached = self._items.get(key)
            if cached is not None and cached[0] is image:
                self._items.move_to_end(key)
                return cached[1]
        data = base64.b64encode(encode_image(image, image_format, jpeg_quality)).decode("ascii")
        with self._lock:
            self.encodes += 1
            self._items[key] = (image, data)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return data

    def encoded_image(self, index: int, image: Image.Image, image_format: str, jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> EncodedImage:
        data = self.base64(image, image_format, jpeg_quality)
        return EncodedImage(index=index, format=image_format, data=data, width=image.width, height=image.height)


def info_to_wire(info: Mapping[str, Any]) -> dict[str, Any]:
    """``info`` with plain JSON types (numpy scalars become Python numbers)."""
    return {key: _plain(value) for key, value in info.items()}


def info_from_wire(info: Mapping[str, Any]) -> dict[str, Any]:
    """The local environment's ``info`` back from its JSON form (tuples where it has tuples)."""
    restored = dict(info)
    for key in TUPLE_INFO_KEYS:
        if isinstance(restored.get(key), list):
            restored[key] = tuple(restored[key])
    for key in TUPLE_LIST_INFO_KEYS:
        if isinstance(restored.get(key), list):
            restored[key] = [tuple(v) if isinstance(v, list) else v for v in restored[key]]
    return restored


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def check_image_format(image_format: Optional[str]) -> str:
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format={image_format!r}; choose one of {IMAGE_FORMATS}")
    return str(image_format)
