"""Numeric observation and action spaces for ``mgpo/HighResVQA-v0``, so numeric RL libraries (stable-baselines3) can play it.

The environment speaks text: its action is the model's reply, its observation
holds a conversation. :class:`NumericActionWrapper` translates both ways:

Observation (``Dict``, what SB3's ``MultiInputPolicy`` accepts):

* ``image``: the image the model sees now (the shrunk original, or the crop),
  resized to ``image_shape`` (default 64x64x3, ``uint8``). The whole view is
  stretched to the square, so a position in it, relative to its sides, is the
  same position in the view: the box actions below use exactly that frame.
* ``state``: a ``float32`` vector in [0, 1]:

  - the turn, one-hot (``max_turns + 1`` entries);
  - which answers are on offer: with ``answers`` given, a mask over that list
    (1 where the answer is one of this question's options); otherwise a mask
    over the option letters ``A..`` (``max_choices`` entries);
  - ``box_valid`` of the last grounding reply (1 entry);
  - the region of the original the image shows, relative to the original's
    sides ``(x1, y1, x2, y2)`` (4 entries; ``(0, 0, 1, 1)`` for the whole image).

Action (``Box(-1, 1, shape=(5,))``, symmetric as SB3 recommends; ``u = (a + 1) / 2``
maps each number to [0, 1]):

* grounding turn: ``u[0:4]`` is the crop box relative to the view's sides,
  ``box_format="xyxy"`` (corners, sorted so ``x1 <= x2``, ``y1 <= y2``) or
  ``"cxcywh"`` (centre and size, the size mapped into ``box_size_range`` and the
  box clipped to the view). It is written in the
  environment's own ``box_frame`` (pixels of the view the model saw, 0-1000 or
  0-1) with :func:`~mgpo_env.box_parser.format_box`, exactly as a model would.
  ``u[4]`` is ignored.
* answer turn: ``u[4]`` picks an answer: ``index = min(int(u[4] * k), k - 1)``
  of ``k`` slots. With ``answers=None`` the slots are the letters of the
  question's options (``k`` = its number of options) and the reply is
  ``\\boxed{B}``; with ``answers`` (a fixed list of answer texts, e.g. the four
  colour pairs of the synthetic task) the slot is that text and the reply is
  ``\\boxed{red and cyan}``, which the grader maps to the option that says so (an
  answer that is not on offer is graded wrong). Use ``answers`` when option order
  is shuffled per question, as in the synthetic task: a letter alone carries no meaning.
  ``u[0:4]`` is ignored.

With ``answer_scores=True`` the ``Box`` action has ``4 + k`` numbers: one score per
answer slot after the box, and the answer is the slot with the highest score,
instead of steering one number into one of ``k`` intervals (whose order means
nothing). In ``benchmarks/sb3_ppo.py`` neither ``Box`` variant learned as fast as
the ``MultiDiscrete`` action below.

With ``action_bins=n`` the action is ``MultiDiscrete([n, n, n, n, k])`` instead:
the four box numbers are bins, ``u = (bin + 0.5) / n``, and the last entry is the
answer slot itself. Categorical actions were much easier for PPO to learn than
clipped Gaussians there (see ``benchmarks/results/sb3_ppo.md``).

Protocols: ``two_turn`` (box, then answer) and ``single_turn`` (answer at once;
the no-crop baseline). ``free`` is refused: a numeric action would need one more
number to say "crop again" or "answer now".

The reply sent is in ``info["text_action"]``. The reward, termination and the
rest of ``info`` are the environment's, unchanged.

Example:
    >>> import gymnasium as gym, mgpo_env
    >>> env = NumericActionWrapper(gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 4, "canvas_size": 448},
    ...                                     min_pixels=112 * 112, max_pixels=224 * 224, observation_image_shape=(224, 224)))
    >>> obs, info = env.reset(seed=0)
    >>> obs["image"].shape, obs["state"].shape
    ((64, 64, 3), (12,))
    >>> obs, reward, terminated, truncated, info = env.step(np.array([-1.0, -1.0, 0.0, 0.0, 0.0], dtype=np.float32))
    >>> info["text_action"] == format_box((0, 0, 112, 112)), info["box_valid"], info["crop_box"]
    (True, True, (0, 0, 224, 224))
    >>> obs, reward, terminated, truncated, info = env.step(np.array([0, 0, 0, 0, -1.0], dtype=np.float32))
    >>> info["text_action"], terminated
    ('\\\\boxed{A}', True)
"""

from __future__ import annotations

import string
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from .box_parser import format_box
from .geometry import from_view_pixels
from .grading import normalize_text

__all__ = ["NumericActionWrapper", "BOX_FORMATS"]

BOX_FORMATS = ("xyxy", "cxcywh")
SUPPORTED_PROTOCOLS = ("two_turn", "single_turn")


class NumericActionWrapper(gym.Wrapper):
    """Numeric ``Dict`` observations and a ``Box`` (or ``MultiDiscrete``) action for the text env (see the module docstring).

    Args:
        env: a ``HighResVQAEnv`` (possibly wrapped) in protocol ``two_turn`` or ``single_turn``.
        image_shape: ``(height, width)`` of the ``image`` observation.
        answers: a fixed list of answer texts the action's last number chooses
            from (``None``: choose among the option letters).
        max_choices: how many option letters the state's mask has room for
            (questions with more options are refused) when ``answers`` is ``None``.
        box_format: how ``u[0:4]`` describe the box: ``"xyxy"`` or ``"cxcywh"``.
        box_size_range: for ``"cxcywh"``, the smallest and largest box side, relative
            to the view, that ``u = 0`` and ``u = 1`` stand for. Narrowing it to the
            sizes that can work (larger than the env's minimum box, small enough to
            show detail) spares the policy exploring useless boxes.
        answer_scores: the ``Box`` action ends with one score per answer slot
            (the highest wins) instead of one number for the slot.
        action_bins: ``None`` for the ``Box`` action; an int ``n >= 2`` for the
            ``MultiDiscrete`` action (``n`` bins a box number, one entry an answer slot).
    """

    def __init__(
        self,
        env: gym.Env,
        image_shape: tuple[int, int] = (64, 64),
        answers: Optional[Sequence[str]] = None,
        max_choices: int = 4,
        box_format: str = "xyxy",
        box_size_range: tuple[float, float] = (0.0, 1.0),
        answer_scores: bool = False,
        action_bins: Optional[int] = None,
    ) -> None:
        super().__init__(env)
        base = env.unwrapped
        protocol = getattr(base, "protocol", None)
        if protocol not in SUPPORTED_PROTOCOLS:
            raise ValueError(
                f"NumericActionWrapper supports protocol {' or '.join(SUPPORTED_PROTOCOLS)}, got {protocol!r}; "
                "in 'free' mode a numeric action cannot say whether to crop again or to answer"
            )
        if box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        if not 0.0 <= box_size_range[0] <= box_size_range[1] <= 1.0:
            raise ValueError(f"box_size_range must be (low, high) with 0 <= low <= high <= 1, got {box_size_range!r}")
        if answer_scores and action_bins is not None:
            raise ValueError("answer_scores applies to the Box action; with action_bins the answer is already a categorical entry")
        if action_bins is not None and (not isinstance(action_bins, int) or action_bins < 2):
            raise ValueError(f"action_bins must be None or an int >= 2, got {action_bins!r}")
        if len(image_shape) != 2 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width), got {image_shape!r}")
        if answers is not None:
            answers = tuple(str(a) for a in answers)
            if len(answers) < 2:
                raise ValueError("answers must list at least 2 answer texts")
            normalised = [normalize_text(a) for a in answers]
            if len(set(normalised)) != len(normalised):
                raise ValueError(f"answers must differ after normalisation, got {list(answers)}")
        elif not 2 <= max_choices <= len(string.ascii_uppercase):
            raise ValueError(f"max_choices must be between 2 and 26, got {max_choices}")
        self.protocol: str = protocol
        self.max_turns: int = int(base.max_turns)
        self.box_frame: str = base.box_frame
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.answers: Optional[tuple[str, ...]] = answers
        self.max_choices = int(max_choices)
        self.box_format = box_format
        self.box_size_range = (float(box_size_range[0]), float(box_size_range[1]))
        self.action_bins = action_bins
        self.answer_scores = bool(answer_scores)
        slots = len(answers) if answers is not None else self.max_choices
        self._slots = slots
        self._state_size = (self.max_turns + 1) + slots + 1 + 4
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, shape=(*self.image_shape, 3), dtype=np.uint8),
                "state": spaces.Box(0.0, 1.0, shape=(self._state_size,), dtype=np.float32),
            }
        )
        self._action_size = 4 + slots if answer_scores else 5
        if action_bins is None:
            self.action_space: spaces.Space = spaces.Box(-1.0, 1.0, shape=(self._action_size,), dtype=np.float32)
        else:
            self.action_space = spaces.MultiDiscrete([action_bins] * 4 + [slots])
        self._turn = 0
        self._frame_size: tuple[int, int] = (1, 1)  # the view boxes are written in
        self._original_size: tuple[int, int] = (1, 1)
        self._region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
        self._box_valid = False

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._turn = int(obs["turn"])
        # Boxes are read in the frame of the first view (box_reference="original").
        self._frame_size = tuple(int(v) for v in info["model_image_size"])  # type: ignore[assignment]
        self._original_size = tuple(int(v) for v in info["original_image_size"])  # type: ignore[assignment]
        self._region = (0.0, 0.0, 1.0, 1.0)
        self._box_valid = False
        return self._observation(obs), info

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        text = self.text_action(action)
        obs, reward, terminated, truncated, info = self.env.step(text)
        self._turn = int(obs["turn"])
        self._box_valid = bool(info.get("box_valid", False))
        if not terminated and info.get("crop_box") is not None and self._box_valid:
            w, h = self._original_size
            x1, y1, x2, y2 = info["crop_box"]
            self._region = (x1 / w, y1 / h, x2 / w, y2 / h)
        elif not terminated:
            self._region = (0.0, 0.0, 1.0, 1.0)  # an invalid box shows the whole image again
        info = dict(info)
        info["text_action"] = text
        return self._observation(obs), float(reward), terminated, truncated, info

    # ------------------------------------------------------------ translate
    def is_answer_turn(self) -> bool:
        """Whether the next action is read as an answer (else as a crop box)."""
        return self.protocol == "single_turn" or self._turn >= self.max_turns - 1

    def text_action(self, action: Any) -> str:
        """The reply the numeric ``action`` stands for in the current turn."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self._action_size,):
            raise ValueError(f"the action must have {self._action_size} numbers, got shape {np.asarray(action).shape}")
        if self.action_bins is None:
            u = np.clip((np.nan_to_num(a, nan=0.0) + 1.0) / 2.0, 0.0, 1.0)
            if self.answer_scores:
                # The centre of the best-scoring slot's interval, so _answer_text picks that slot.
                slot_fraction = (int(np.argmax(np.nan_to_num(a[4:], nan=-np.inf))) + 0.5) / self._slots
            else:
                slot_fraction = float(u[4])
        else:
            bins = np.clip(a[:4], 0, self.action_bins - 1)
            u = (bins + 0.5) / self.action_bins
            # The centre of the slot's interval, so _answer_text picks that slot.
            slot_fraction = (min(max(int(a[4]), 0), self._slots - 1) + 0.5) / self._slots
        if self.is_answer_turn():
            return self._answer_text(slot_fraction)
        return self._box_text(u[:4])

    def _box_text(self, u: np.ndarray) -> str:
        if self.box_format == "xyxy":
            x1, x2 = sorted((float(u[0]), float(u[2])))
            y1, y2 = sorted((float(u[1]), float(u[3])))
        else:
            cx, cy, bw, bh = (float(v) for v in u)
            low, high = self.box_size_range
            bw, bh = low + bw * (high - low), low + bh * (high - low)
            x1, x2 = max(0.0, cx - bw / 2), min(1.0, cx + bw / 2)
            y1, y2 = max(0.0, cy - bh / 2), min(1.0, cy + bh / 2)
        w, h = self._frame_size
        view_box = (x1 * w, y1 * h, x2 * w, y2 * h)
        coords = from_view_pixels(view_box, self.box_frame, self._frame_size)
        if self.box_frame == "pixel":
            # Whole pixels, rounded outwards, so format_box's rounding never shrinks the box.
            coords = (np.floor(coords[0]), np.floor(coords[1]), np.ceil(coords[2]), np.ceil(coords[3]))
        return format_box(tuple(float(c) for c in coords))

    def _answer_text(self, u: float) -> str:
        if self.answers is not None:
            slots = len(self.answers)
            return f"\\boxed{{{self.answers[min(int(u * slots), slots - 1)]}}}"
        # Letters: the slots are A.. up to this question's number of options (a
        # MultiDiscrete slot past the last option picks the last option).
        slots = max(1, len(self._choices()))
        if self.action_bins is not None or self.answer_scores:
            index = min(int(u * self._slots), slots - 1)
        else:
            index = min(int(u * slots), slots - 1)
        return f"\\boxed{{{string.ascii_uppercase[index]}}}"

    # ---------------------------------------------------------- observation
    def _choices(self) -> tuple[str, ...]:
        sample = getattr(self.env.unwrapped, "sample", None)
        return tuple(sample.choices) if sample is not None else ()

    def _observation(self, obs: dict) -> dict:
        width, height = (int(v) for v in obs["image_size"])
        view = obs["image"][: max(1, height), : max(1, width)]
        picture = Image.fromarray(np.ascontiguousarray(view))
        if picture.size != (self.image_shape[1], self.image_shape[0]):
            # Area averaging, as the environment shrinks its views.
            picture = picture.resize((self.image_shape[1], self.image_shape[0]), Image.Resampling.BOX)
        state = np.zeros(self._state_size, dtype=np.float32)
        state[min(self._turn, self.max_turns)] = 1.0
        offset = self.max_turns + 1
        choices = self._choices()
        if self.answers is not None:
            offered = {normalize_text(c) for c in choices}
            for i, answer in enumerate(self.answers):
                state[offset + i] = 1.0 if normalize_text(answer) in offered else 0.0
            offset += len(self.answers)
        else:
            if len(choices) > self.max_choices:
                raise ValueError(f"the question has {len(choices)} options but max_choices is {self.max_choices}")
            state[offset : offset + len(choices)] = 1.0
            offset += self.max_choices
        state[offset] = 1.0 if self._box_valid else 0.0
        state[offset + 1 : offset + 5] = np.clip(self._region, 0.0, 1.0)
        return {"image": np.asarray(picture, dtype=np.uint8), "state": state}
