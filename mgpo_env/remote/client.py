"""Clients of the ``mgpo/HighResVQA-v0`` OpenEnv server.

* :class:`HighResVQAClient`: OpenEnv's ``EnvClient`` for this environment (async, or
  ``.sync()``); ``reset``/``step`` give a ``StepResult`` whose observation holds the
  conversation, the new images (encoded bytes), the history and the info.
* :class:`RemoteHighResVQAEnv`: a ``gymnasium.Env`` over one server session with the
  local environment's API: ``reset``/``step`` return the same observation dict and the
  same ``info``; ``chat_messages()`` and ``chat_images()`` give the conversation with
  ``PIL`` images, so :class:`~mgpo_agents.rollout.RolloutEngine` plays it unchanged.
  Ask for ``image_format="png"`` to get the exact pixels (training); JPEG is smaller.

Example::

    env = RemoteHighResVQAEnv("http://127.0.0.1:8000", image_format="png")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("[0, 0, 200, 200]")
    env.close()
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Mapping, Optional, Union

import gymnasium as gym
import numpy as np
from openenv.core.client_types import StepResult
from openenv.core.env_client import EnvClient
from PIL import Image
from websockets.exceptions import ConnectionClosed

from mgpo_env.highres_vqa import observation_space, shown_pixels
from mgpo_env.spaces import AnyText

from .wire import EncodedImage, HighResVQAAction, HighResVQAObservation, HighResVQAState, check_image_format, info_from_wire

# What a trainer can ask the server to have fixed the same way as its own config.
CHECKED_STATE_FIELDS = ("dataset_size", "protocol", "max_turns", "min_pixels", "max_pixels", "box_frame")


class DecodedImages:
    """Recently decoded images by their encoded text, shared by a process's remote environments.

    The G environments of a group receive the same view; it is decoded once, and they share
    the decoded image as local environments share theirs.
    """

    def __init__(self, max_items: int = 16) -> None:
        self.max_items = int(max_items)
        self._items: "OrderedDict[str, Image.Image]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, encoded: EncodedImage) -> Image.Image:
        with self._lock:
            image = self._items.get(encoded.data)
            if image is not None:
                self._items.move_to_end(encoded.data)
                return image
        image = encoded.to_pil()
        with self._lock:
            self._items[encoded.data] = image
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return image


DECODED = DecodedImages()


class HighResVQAClient(EnvClient[HighResVQAAction, HighResVQAObservation, HighResVQAState]):
    """OpenEnv client of ``mgpo serve``: one WebSocket session, one environment on the server.

    ``step`` takes a :class:`~mgpo_env.remote.wire.HighResVQAAction` or the reply as a ``str``.
    """

    def _step_payload(self, action: Union[HighResVQAAction, str]) -> dict[str, Any]:
        if isinstance(action, str):
            action = HighResVQAAction(message=action)
        return {"message": action.message}

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[HighResVQAObservation]:
        observation = HighResVQAObservation.model_validate(
            {**payload.get("observation", {}), "reward": payload.get("reward"), "done": bool(payload.get("done", False))}
        )
        return StepResult(observation=observation, reward=payload.get("reward"), done=observation.done, metadata=payload.get("metadata"))

    def _parse_state(self, payload: dict[str, Any]) -> HighResVQAState:
        return HighResVQAState.model_validate(payload)


class RemoteHighResVQAEnv(gym.Env[dict, str]):
    """``mgpo/HighResVQA-v0`` played on a server, with the local environment's API.

    Args:
        url: the server (``http://host:port`` or ``ws://host:port``).
        image_format: ``"jpeg"`` or ``"png"`` (lossless: the pixels equal the local ones).
        expect: values of the server's fixed options (``dataset_size``, ``protocol``,
            ``max_turns``, ``min_pixels``, ``max_pixels``, ``box_frame``) this client
            relies on; a different server is refused at once rather than trained on.
        connect_timeout_s, message_timeout_s: OpenEnv client timeouts.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        url: str,
        *,
        image_format: str = "jpeg",
        expect: Optional[Mapping[str, Any]] = None,
        connect_timeout_s: float = 10.0,
        message_timeout_s: float = 120.0,
    ) -> None:
        self.image_format = check_image_format(image_format)
        self.client = HighResVQAClient(base_url=url, connect_timeout_s=connect_timeout_s, message_timeout_s=message_timeout_s).sync()
        self.client.connect()
        try:
            self.server_state: HighResVQAState = self.client.state()
            _check_expected(self.server_state, expect or {}, url)
        except Exception:
            self.client.close()
            raise
        self.observation_space = observation_space(self.server_state.observation_image_shape, self.server_state.max_turns)
        self.action_space = AnyText(max_length=self.server_state.max_action_bytes)
        self._messages: list[dict[str, Any]] = []
        self._encoded: list[Any] = []  # EncodedImage, in order
        self._decoded: dict[int, Image.Image] = {}
        self.last_observation: Optional[HighResVQAObservation] = None

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        try:
            result = self.client.reset(seed=seed, options=options, image_format=self.image_format)
        except ConnectionClosed:  # the server closed the session (idle past its timeout): a new one starts the episode
            result = self.client.reset(seed=seed, options=options, image_format=self.image_format)
        self._encoded, self._decoded = [], {}
        observation = self._take(result.observation)
        return self._gym_observation(observation), info_from_wire(observation.info)

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        if not isinstance(action, str):
            raise TypeError(f"the action must be the model's reply as a str, got {type(action).__name__}")
        observation = self._take(self.client.step(action).observation)
        reward = float(observation.reward or 0.0)
        return self._gym_observation(observation), reward, observation.terminated, observation.truncated, info_from_wire(observation.info)

    def chat_messages(self) -> list[dict[str, Any]]:
        """The conversation as Hugging Face chat messages, images as ``PIL.Image`` (as the local ``chat_messages``)."""
        return [
            {
                "role": message["role"],
                "content": [
                    {"type": "image", "image": self.image(part["index"])} if part["type"] == "image" else dict(part)
                    for part in message["content"]
                ],
            }
            for message in self._messages
        ]

    def chat_images(self) -> list[Image.Image]:
        return [self.image(i) for i in range(len(self._encoded))]

    def image_bytes(self) -> list[bytes]:
        """The episode's images as the server encoded them."""
        return [encoded.to_bytes() for encoded in self._encoded]

    def image(self, index: int) -> Image.Image:
        """Image ``index`` of the episode, decoded once."""
        if index not in self._decoded:
            self._decoded[index] = DECODED.get(self._encoded[index])
        return self._decoded[index]

    def close(self) -> None:
        self.client.close()

    def _take(self, observation: HighResVQAObservation) -> HighResVQAObservation:
        for encoded in observation.images:
            if encoded.index != len(self._encoded):
                raise RuntimeError(f"image {encoded.index} arrived after {len(self._encoded)} images: the session is out of step")
            self._encoded.append(encoded)
        self._messages = observation.messages
        self.last_observation = observation
        return observation

    def _gym_observation(self, observation: HighResVQAObservation) -> dict[str, Any]:
        pixels = shown_pixels(self.image(len(self._encoded) - 1), self.observation_space["image"].shape[:2])
        canvas = np.zeros(self.observation_space["image"].shape, dtype=np.uint8)
        height, width = pixels.shape[:2]
        canvas[:height, :width] = pixels
        return {
            "image": canvas,
            "image_size": np.array((width, height), dtype=np.int64),
            "turn": observation.turn,
            "history": tuple(dict(entry) for entry in observation.history),
        }


def _check_expected(state: HighResVQAState, expect: Mapping[str, Any], url: str) -> None:
    unknown = sorted(set(expect) - set(CHECKED_STATE_FIELDS))
    if unknown:
        raise ValueError(f"cannot check {unknown} on the server; checkable: {list(CHECKED_STATE_FIELDS)}")
    differ = {key: (getattr(state, key), value) for key, value in expect.items() if getattr(state, key) != value}
    if differ:
        detail = ", ".join(f"{key}: server {server!r}, expected {wanted!r}" for key, (server, wanted) in differ.items())
        raise ValueError(f"the server at {url} runs a different environment ({detail}); start it with the same options")
