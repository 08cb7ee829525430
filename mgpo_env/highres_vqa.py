"""``mgpo/HighResVQA-v0``: answer a question about a high-resolution image by cropping it.

The episode (``protocol="two_turn"``, the published MGPO template):

1. ``reset`` shows the image shrunk to the pixel budget and asks for the key
   region's coordinates (the question *without* its options).
2. ``step(text)``: the environment parses a box from the model's text, maps it
   from the frame of the image the model saw to original pixels, crops the
   *original* image there, fits the crop to the budget and shows it with the
   question *and* its options. A missing or invalid box is not penalised: the
   shrunk original is shown again instead, and the episode goes on.
3. ``step(text)``: the final answer. Reward 1.0 if correct, else 0.0; the episode ends.

``protocol="free"`` lets the model crop as often as it likes (each reply is a
box or an answer) up to ``max_turns`` replies, the last of which must answer;
``protocol="single_turn"`` asks for the answer at once (the GRPO baseline).

Observation (``gymnasium.spaces.Dict``):

* ``image``: the image the model sees now, as ``uint8`` HxWx3, top-left aligned
  in a fixed canvas of ``observation_image_shape`` (zero padding; an image larger
  than the canvas is scaled down to fit);
* ``image_size``: ``(width, height)`` of the valid part of ``image``;
* ``turn``: how many replies the model has given;
* ``history``: the conversation so far as a tuple of ``{"role", "content"}``
  dicts, ``"<image>"`` marking where an image sits.

The exact structured conversation (Hugging Face chat messages with the
``PIL`` images, at the size the model sees them) is ``env.unwrapped.chat_messages()``.

Example:
    >>> import gymnasium as gym, mgpo_env
    >>> env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 4, "canvas_size": 1024})
    >>> obs, info = env.reset(seed=0)
    >>> obs["history"][-1]["role"], info["box_valid"]
    ('user', False)
    >>> obs, reward, terminated, truncated, info = env.step('[0, 0, 200, 200]')
    >>> info["box_valid"], terminated
    (True, False)
    >>> obs, reward, terminated, truncated, info = env.step("\\\\boxed{A}")
    >>> terminated, reward in (0.0, 1.0)
    (True, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from mgpo_datasets.registry import resolve_dataset
from mgpo_datasets.sample import Sample, find_sample

from .box_parser import parse_box
from .geometry import (
    BOX_FRAMES,
    Box,
    BoxPolicy,
    IntBox,
    Size,
    to_pixel_box,
    to_view_pixels,
    view_to_original,
    validate_box,
)
from .grading import extract_boxed, grade
from .image_budget import ImageBudget, resize_image, resize_region
from .image_store import DEFAULT_CACHE_BYTES, DEFAULT_MAX_IMAGE_PIXELS, ImageStore
from .rendering import INVALID_COLOR, PREDICTED_COLOR, TARGET_COLOR, LabelledBox, draw_boxes
from .spaces import AnyText
from .templates import PromptTemplates

PROTOCOLS = ("two_turn", "free", "single_turn")
SAMPLING_MODES = ("random", "shuffle", "sequential")
BOX_REFERENCES = ("original", "latest")
RESET_OPTIONS = ("index", "sample_id")
IMAGE_MARKER = "<image>"


class EpisodeFinishedError(RuntimeError):
    """``step`` was called after the episode ended; call ``reset`` first."""


class InvalidActionError(TypeError):
    """The action is not a ``str``."""


@dataclass
class ImagePart:
    """An image inside a message: what the model sees, and where it came from."""

    image: Image.Image  # at the size the model is shown
    region: Box  # the part of the original it shows, in original pixels
    kind: str  # "original" or "crop"


@dataclass
class Message:
    role: str
    parts: list[Union[str, ImagePart]] = field(default_factory=list)

    def text(self) -> str:
        return "".join(IMAGE_MARKER if isinstance(p, ImagePart) else p for p in self.parts)


@dataclass
class GroundingRecord:
    """One grounding reply: what the model asked to see and what it got."""

    turn: int
    model_image_size: Size  # the frame the box was given in
    view_box: Optional[Box]  # the parsed box in that frame's pixels (None if none parsed)
    crop_box: Optional[IntBox]  # original pixels, None when missing or invalid
    valid: bool
    error: Optional[str]


class HighResVQAEnv(gym.Env[dict, str]):
    """Multi-turn, grounding-based visual question answering on high-resolution images.

    Args:
        dataset: ``"synthetic"`` (default), a spec such as ``"vstar:/data/vstar"``,
            a ``datasets.Dataset`` or a sequence of :class:`~mgpo_datasets.sample.Sample`
            (see :mod:`mgpo_datasets.registry`).
        dataset_kwargs: keyword arguments for the dataset loader (e.g. the synthetic
            task's ``canvas_size``).
        protocol: ``"two_turn"`` (published MGPO), ``"free"`` or ``"single_turn"`` (GRPO baseline).
        max_turns: replies allowed in free mode (the last one must answer).
        min_pixels, max_pixels, image_factor: the pixel budget of every image shown
            (sides multiples of ``image_factor``).
        box_frame: how the model writes coordinates: ``"pixel"`` (of the image it was
            shown; Qwen2.5-VL), ``"norm1000"`` or ``"relative"``.
        box_policy: a :class:`~mgpo_env.geometry.BoxPolicy` or a dict of its fields
            (``min_side``, ``max_aspect``, ``clamp``).
        box_reference: in free mode, whether boxes refer to the shrunk original
            (``"original"``, default) or to the latest image shown (``"latest"``, zoom
            into the last crop).
        templates: a :class:`~mgpo_env.templates.PromptTemplates` to change the prompts, or a
            dict of the fields to replace (JSON-friendly, e.g. from a training config).
        sampling: how ``reset`` picks a sample without options: ``"random"``,
            ``"shuffle"`` (a seeded permutation per epoch) or ``"sequential"``.
        observation_image_shape: ``(height, width)`` of the ``image`` observation canvas.
        image_cache_bytes: decoded originals kept in memory (a GRPO group reuses one).
        max_image_pixels: larger images are refused (decompression bombs).
        image_store: an :class:`~mgpo_env.image_store.ImageStore` to share between
            environments (overrides ``image_cache_bytes`` and ``max_image_pixels``).
        max_action_length: the action space's maximum length (longer strings are
            still accepted by ``step``; only the first 20,000 characters are searched for a box).
        image_after_text: put each user message's image after its text instead of before
            (Qwen's examples put it first). With the image last, the model's reply starts a
            fixed number of tokens after the image's last token, whatever the question's length.
        render_mode: ``"rgb_array"`` or ``"ansi"``.
        render_max_side: longer side of ``render()``'s picture.
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 1}

    def __init__(
        self,
        dataset: Any = "synthetic",
        *,
        dataset_kwargs: Optional[Mapping[str, Any]] = None,
        protocol: str = "two_turn",
        max_turns: int = 4,
        min_pixels: int = 256 * 28 * 28,
        max_pixels: int = 1280 * 28 * 28,
        image_factor: int = 28,
        box_frame: str = "pixel",
        box_policy: Union[BoxPolicy, Mapping[str, Any], None] = None,
        box_reference: str = "original",
        templates: Union[PromptTemplates, Mapping[str, str], None] = None,
        sampling: str = "random",
        observation_image_shape: tuple[int, int] = (1344, 1344),
        image_cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        image_store: Optional[ImageStore] = None,
        max_action_length: int = 65_536,
        image_after_text: bool = False,
        render_mode: Optional[str] = None,
        render_max_side: int = 1024,
    ) -> None:
        _check_choice("protocol", protocol, PROTOCOLS)
        _check_choice("sampling", sampling, SAMPLING_MODES)
        _check_choice("box_reference", box_reference, BOX_REFERENCES)
        _check_choice("box_frame", box_frame, BOX_FRAMES)
        if render_mode is not None:
            _check_choice("render_mode", render_mode, tuple(self.metadata["render_modes"]))
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be an int >= 1, got {max_turns!r}")
        if len(observation_image_shape) != 2 or min(observation_image_shape) < image_factor:
            raise ValueError(f"observation_image_shape must be (height, width) of at least {image_factor}, got {observation_image_shape!r}")
        if isinstance(templates, Mapping):
            templates = PromptTemplates.with_overrides(templates)
        if templates is not None and not isinstance(templates, PromptTemplates):
            raise TypeError(f"templates must be a PromptTemplates or a dict of its fields, got {type(templates).__name__}")

        self.protocol = protocol
        self.max_turns = {"two_turn": 2, "single_turn": 1, "free": max_turns}[protocol]
        self.budget = ImageBudget(min_pixels=min_pixels, max_pixels=max_pixels, factor=image_factor)
        self.box_frame = box_frame
        self.box_policy = _as_policy(box_policy)
        self.box_reference = box_reference
        self.templates = templates or PromptTemplates()
        self.image_after_text = bool(image_after_text)
        self.sampling = sampling
        self.render_mode = render_mode
        self.render_max_side = int(render_max_side)
        self.dataset: Sequence[Sample] = resolve_dataset(dataset, **dict(dataset_kwargs or {}))
        # Several envs playing one GRPO group can share one store, so the group decodes once.
        self.images = image_store if image_store is not None else ImageStore(image_cache_bytes, max_image_pixels=max_image_pixels)

        self.observation_space = observation_space(observation_image_shape, self.max_turns)
        self.action_space = AnyText(max_length=max_action_length)

        self._order: Optional[np.ndarray] = None
        self._cursor = 0
        self._sample: Optional[Sample] = None
        self._messages: list[Message] = []
        self._groundings: list[GroundingRecord] = []
        self._turn = 0
        self._done = True
        self._correct: Optional[bool] = None
        self._answer: Optional[str] = None
        self._view: Optional[ImagePart] = None  # the image the model saw last
        self._original_view: Optional[ImagePart] = None
        self._shown: dict[int, tuple[Image.Image, np.ndarray]] = {}

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[dict, dict]:
        """Start an episode.

        Options: ``{"index": i}`` plays sample ``i``; ``{"sample_id": s}`` plays the
        sample with that id (a GRPO group resets G times with the same option).
        Without options the sample is drawn as ``sampling`` says, from the seeded RNG.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._order, self._cursor = None, 0
        index = self._choose_index(options or {})
        sample = self.dataset[index]
        context = f"sample {sample.sample_id!r} (index {index}): "
        # The shrunk original, cached per (sample, budget): a group's G resets compute it once.
        view, (width, height) = self.images.view(
            sample.sample_id, sample.image, self.budget, context=context, need_original=self.protocol != "single_turn"
        )
        self._sample = sample
        self._turn = 0
        self._done = False
        self._correct = None
        self._answer = None
        self._groundings = []
        self._original_view = ImagePart(view, (0.0, 0.0, float(width), float(height)), "original")
        self._view = self._original_view

        choices = sample.choices or None
        if self.protocol == "two_turn":
            system = self._render("system_two_turn", choices)
            first = self._render("user_grounding", choices)
        elif self.protocol == "free":
            system = self._render("system_free", choices, max_turns=self.max_turns)
            first = self._render("user_free_first", choices)
            if self.max_turns == 1:
                first += "\n" + self._render("user_free_last_turn", choices)
        else:
            system = self._render("system_single_turn", choices)
            first = self._render("user_single_turn", choices)
        self._messages = [Message("system", [system]), self._user_message(self._original_view, first)]
        return self._observation(), self._info()

    def _choose_index(self, options: Mapping[str, Any]) -> int:
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; allowed: {list(RESET_OPTIONS)}")
        if "index" in options and "sample_id" in options:
            raise ValueError("give either options['index'] or options['sample_id'], not both")
        n = len(self.dataset)
        if "index" in options:
            index = options["index"]
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -n <= index < n:
                raise ValueError(f"options['index'] must be an int in [0, {n}), got {index!r}")
            return int(index) % n
        if "sample_id" in options:
            return find_sample(self.dataset, str(options["sample_id"]))
        if self.sampling == "random":
            return int(self.np_random.integers(n))
        if self.sampling == "sequential":
            index = self._cursor % n
            self._cursor += 1
            return index
        if self._order is None or self._cursor >= n:  # new epoch: a fresh seeded permutation
            self._order, self._cursor = self.np_random.permutation(n), 0
        index = int(self._order[self._cursor])
        self._cursor += 1
        return index

    # ------------------------------------------------------------------- step
    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        if self._done or self._sample is None:
            raise EpisodeFinishedError("the episode has ended (or was never started); call reset() before step()")
        if not isinstance(action, str):
            raise InvalidActionError(f"the action must be the model's reply as a str, got {type(action).__name__}")
        self._turn += 1
        self._messages.append(Message("assistant", [action]))
        choices = self._sample.choices or None

        answering = (
            self.protocol == "single_turn"
            or self._turn >= self.max_turns
            or (self.protocol == "free" and extract_boxed(action) is not None)
        )
        if answering:
            result = grade(action, self._sample.answer, choices)
            self._done = True
            self._correct = result.correct
            self._answer = result.answer
            reward = 1.0 if result.correct else 0.0
            return self._observation(), reward, True, False, self._info()

        record = self._ground(action)
        self._groundings.append(record)
        turns_left = self.max_turns - self._turn
        if self.protocol == "two_turn":
            if record.valid:
                self._view = self._make_part(self._original_image(), record.crop_box, "crop")  # type: ignore[arg-type]
                self._messages.append(self._user_message(self._view, self._render("user_after_crop", choices)))
            else:
                self._view = self._original_view
                text = self._render("user_after_invalid_box", choices, reason=record.error)
                self._messages.append(self._user_message(self._original_view, text))  # type: ignore[arg-type]
        else:  # free mode
            parts: list[Union[str, ImagePart]] = []
            if record.valid:
                self._view = self._make_part(self._original_image(), record.crop_box, "crop")  # type: ignore[arg-type]
                parts += self._user_message(self._view, self._render("user_free_after_crop", choices, turns_left=turns_left)).parts
            else:
                parts.append(self._render("user_free_after_invalid_box", choices, turns_left=turns_left, reason=record.error))
            if turns_left == 1:
                parts.append("\n" + self._render("user_free_last_turn", choices))
            self._messages.append(Message("user", parts))
        return self._observation(), 0.0, False, False, self._info()

    def _ground(self, text: str) -> GroundingRecord:
        """Parse, check and map the box in ``text``."""
        frame_part = self._original_view if self.box_reference == "original" else self._view
        assert frame_part is not None
        frame_size = frame_part.image.size
        parsed = parse_box(text)
        if parsed is None:
            return GroundingRecord(self._turn, frame_size, None, None, False, "no box found in the reply")
        view_box = to_view_pixels(parsed.coords, self.box_frame, frame_size)
        accepted, error = validate_box(view_box, frame_size, self.box_policy)
        if accepted is None:
            return GroundingRecord(self._turn, frame_size, view_box, None, False, error)
        # The frame image shows `region` of the original: map view pixels into it.
        rx1, ry1, rx2, ry2 = frame_part.region
        region_size = (rx2 - rx1, ry2 - ry1)
        local = view_to_original(accepted, frame_size, region_size)  # type: ignore[arg-type]
        shifted = (local[0] + rx1, local[1] + ry1, local[2] + rx1, local[3] + ry1)
        crop_box = to_pixel_box(shifted, self._original_image().size)
        if crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]:
            return GroundingRecord(self._turn, frame_size, view_box, None, False, "box maps to an empty region of the original")
        return GroundingRecord(self._turn, frame_size, view_box, crop_box, True, None)

    # ---------------------------------------------------------------- helpers
    def _user_message(self, image: ImagePart, text: str) -> Message:
        return Message("user", [text, image] if self.image_after_text else [image, text])

    def _original_image(self) -> Image.Image:
        assert self._sample is not None
        return self.images.get(self._sample.sample_id, self._sample.image, context=f"sample {self._sample.sample_id!r}: ")

    def _make_part(self, original: Image.Image, region: Sequence[float], kind: str) -> ImagePart:
        box = tuple(int(round(v)) for v in region)
        view = resize_region(original, box, self.budget.view_size((box[2] - box[0], box[3] - box[1])))  # type: ignore[arg-type]
        return ImagePart(view, tuple(float(v) for v in box), kind)  # type: ignore[arg-type]

    def _render(self, name: str, choices: Optional[Sequence[str]], **extra: Any) -> str:
        assert self._sample is not None
        return self.templates.render(name, question=self._sample.question, choices=choices, frame=self.box_frame, **extra)

    def _image_parts(self) -> list[ImagePart]:
        return [p for m in self._messages for p in m.parts if isinstance(p, ImagePart)]

    def _shown_pixels(self, image: Image.Image) -> np.ndarray:
        """``image``'s pixels as the observation shows them (scaled down if larger than the canvas).

        Cached per image: a GRPO group's resets show the same view.
        """
        key = id(image)
        cached = self._shown.get(key)
        if cached is not None and cached[0] is image:
            return cached[1]
        pixels = shown_pixels(image, self.observation_space["image"].shape[:2])
        if len(self._shown) >= 4:
            self._shown.pop(next(iter(self._shown)))
        # The entry keeps the image alive, so its id cannot be reused by another image.
        self._shown[key] = (image, pixels)
        return pixels

    def _observation(self) -> dict:
        assert self._view is not None
        pixels = self._shown_pixels(self._view.image)
        # A fresh array every time (Gymnasium: observations never share data), built from fresh
        # zero pages: only the image's own rows and columns are written, where copying a whole
        # cached canvas wrote all of its pages (5 MB at 1344x1344).
        canvas = np.zeros(self.observation_space["image"].shape, dtype=np.uint8)
        height, width = pixels.shape[:2]
        canvas[:height, :width] = pixels
        history = tuple({"role": m.role, "content": m.text()} for m in self._messages)
        return {
            "image": canvas,
            "image_size": np.array((width, height), dtype=np.int64),
            "turn": self._turn,
            "history": history,
        }

    def _info(self) -> dict[str, Any]:
        assert self._sample is not None and self._view is not None and self._original_view is not None
        last = self._groundings[-1] if self._groundings else None
        frame = self._original_view if self.box_reference == "original" else self._view
        return {
            "sample_id": self._sample.sample_id,
            "category": self._sample.category,
            "protocol": self.protocol,
            "turn": self._turn,
            "original_image_size": self._original_image_size(),
            "model_image_size": last.model_image_size if last else frame.image.size,
            "target_box": self._sample.target_box,
            "target_boxes": list(self._sample.target_boxes),
            "crop_box": last.crop_box if last else None,
            "box_valid": bool(last.valid) if last else False,
            "box_error": last.error if last else None,
            "num_crops": sum(1 for g in self._groundings if g.valid),
            "visual_tokens": self.budget.visual_tokens(self._view.image.size),
            "visual_tokens_total": sum(self.budget.visual_tokens(p.image.size) for p in self._image_parts()),
            "answer": self._answer,
            "correct": self._correct,
        }

    def _original_image_size(self) -> Size:
        assert self._original_view is not None
        region = self._original_view.region
        return (int(region[2]), int(region[3]))

    # ----------------------------------------------------------- public views
    @property
    def sample(self) -> Optional[Sample]:
        """The sample being played (``None`` before the first reset)."""
        return self._sample

    @property
    def groundings(self) -> list[GroundingRecord]:
        """Every grounding reply of the episode so far."""
        return list(self._groundings)

    def chat_messages(self) -> list[dict[str, Any]]:
        """The conversation as Hugging Face chat messages, images as ``PIL.Image`` in order.

        Each image is at the size the model is shown (a multiple of ``image_factor``
        within the budget), so a Qwen2.5-VL processor does not resize it again.
        """
        messages = []
        for message in self._messages:
            content = [
                {"type": "image", "image": part.image} if isinstance(part, ImagePart) else {"type": "text", "text": part}
                for part in message.parts
            ]
            messages.append({"role": message.role, "content": content})
        return messages

    def chat_images(self) -> list[Image.Image]:
        """The images of the conversation in order (what ``chat_messages`` holds)."""
        return [part.image for part in self._image_parts()]

    def render(self) -> Union[np.ndarray, str, None]:
        if self.render_mode is None:
            gym.logger.warn('render() needs a render_mode: gym.make("mgpo/HighResVQA-v0", render_mode="rgb_array" or "ansi")')
            return None
        if self._sample is None:
            raise RuntimeError("render() before reset(): there is no episode to draw")
        if self.render_mode == "ansi":
            return self.transcript()
        return np.asarray(draw_boxes(self._original_image(), self.box_overlays(), max_side=self.render_max_side))

    def box_overlays(self) -> list[LabelledBox]:
        """The episode's boxes in original pixels, labelled and coloured for drawing."""
        overlays = [LabelledBox(box, TARGET_COLOR, "target") for box in (self._sample.target_boxes if self._sample else ())]
        for record in self._groundings:
            if record.valid and record.crop_box is not None:
                overlays.append(LabelledBox(tuple(float(v) for v in record.crop_box), PREDICTED_COLOR, f"turn {record.turn}"))  # type: ignore[arg-type]
            elif record.view_box is not None and self._original_view is not None:
                mapped = view_to_original(record.view_box, record.model_image_size, self._original_image_size())
                overlays.append(LabelledBox(mapped, INVALID_COLOR, f"turn {record.turn} (invalid)"))
        return overlays

    def transcript(self) -> str:
        """The conversation as plain text, images shown as ``<image WxH kind>``."""
        lines = []
        for message in self._messages:
            text = "".join(
                f"<image {p.image.width}x{p.image.height} {p.kind}>\n" if isinstance(p, ImagePart) else p for p in message.parts
            )
            lines.append(f"[{message.role}]\n{text}")
        if self._done:
            lines.append(f"[result] answer={self._answer!r} correct={self._correct}")
        return "\n\n".join(lines) + "\n"


def observation_space(observation_image_shape: Sequence[int], max_turns: int) -> spaces.Dict:
    """The observation space of an environment with this canvas and this many replies (a remote client's too)."""
    height, width = (int(v) for v in observation_image_shape)
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8),
            "image_size": spaces.Box(0, max(height, width), shape=(2,), dtype=np.int64),
            "turn": spaces.Discrete(max_turns + 1),
            "history": spaces.Sequence(spaces.Dict({"role": AnyText(max_length=16), "content": AnyText(max_length=1_000_000)})),
        }
    )


def shown_pixels(image: Image.Image, canvas_shape: Sequence[int]) -> np.ndarray:
    """``image``'s pixels as the ``image`` observation shows them: scaled down to fit a ``(height, width)`` canvas.

    A remote client rebuilds the observation canvas with it from the image it received.
    """
    height, width = int(canvas_shape[0]), int(canvas_shape[1])
    shown = image
    if shown.width > width or shown.height > height:
        scale = min(width / shown.width, height / shown.height)
        shown = resize_image(shown, (max(1, int(shown.width * scale)), max(1, int(shown.height * scale))))
    return np.asarray(shown, dtype=np.uint8)


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}")


def _as_policy(policy: Union[BoxPolicy, Mapping[str, Any], None]) -> BoxPolicy:
    if policy is None:
        return BoxPolicy()
    if isinstance(policy, BoxPolicy):
        return policy
    if isinstance(policy, Mapping):
        names = {f.name for f in dataclasses.fields(BoxPolicy)}
        unknown = sorted(set(policy) - names)
        if unknown:
            raise ValueError(f"unknown box_policy field(s) {unknown}; allowed: {sorted(names)}")
        return BoxPolicy(**policy)
    raise TypeError(f"box_policy must be a BoxPolicy or a dict, got {type(policy).__name__}")
