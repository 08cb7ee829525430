"""Episodes from a live environment: build records, and record every episode of a loop.

* :func:`record_from_env` turns the episode an environment is playing (or has
  finished) into an :class:`~mgpo_tools.episode_record.EpisodeRecord`, through the
  env's public accessors only;
* :class:`RecordEpisodes` wraps an env and adds each finished episode to an
  :class:`~mgpo_tools.episode_store.EpisodeStore`;
* :func:`play_episodes` is the evaluation loop around it: play N episodes with a
  policy and store them.

These need gymnasium and the environment; the record format and the store do not,
so reading a stored run does not depend on how it was played.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

import gymnasium as gym
from PIL import Image

from mgpo_env.geometry import Box, Size
from mgpo_env.grading import grade
from mgpo_env.rendering import draw_boxes

from .episode_record import ChatMessage, ContentPart, EpisodeRecord, GroundingEntry, Overlay, StoredImage, image_hash, jsonable

if TYPE_CHECKING:  # the recorder only calls the store's wants() and add()
    from .episode_store import EpisodeStore


def _normalise_mode(image: Image.Image) -> Image.Image:
    # PNG stores these modes losslessly; anything else (palette, CMYK, 16-bit) is shown to people as RGB anyway.
    return image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")


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
        groundings=tuple(GroundingEntry.from_values(g.turn, g.model_image_size, g.view_box, g.crop_box, g.valid, g.error) for g in groundings),
        images=tuple(images),
        original=thumbnail,
        overlays=tuple(Overlay.from_values(o.box, o.color, o.label) for o in base.box_overlays()),
        done=done,
        reward=float(reward),
        correct=correct,
        parsed_answer=None if parsed is None else str(parsed),
        extra=json.loads(json.dumps(jsonable(dict(extra or {})))),
        pixels=pixels,
    )


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

