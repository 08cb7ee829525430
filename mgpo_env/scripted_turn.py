"""A first turn played by a fixed rule: the baselines that could win without learned grounding.

MGPO's claim is that the *model's* box matters. To test it, the same two-turn
episode is played with the box chosen by a rule that knows nothing the policy
learns, and the agent only answers:

* ``"random"``: a free-form box, independent of the image (:func:`random_box`);
* ``"oracle"``: the smallest valid box around the annotated target (an upper bound);
* ``"fixed:x1,y1,x2,y2"``: the same box, in the environment's coordinate frame, on every image.

:class:`ScriptedFirstTurn` wraps a ``two_turn`` environment: ``reset`` plays turn 1
with the rule's box, so the observation (and ``env.unwrapped.chat_messages()``) already
holds the rule's reply and the crop it produced; the agent's one action is the answer.
The rule's reply is an assistant message the agent did not generate, so a trainer that
learns only from generated tokens learns only the answer turn.

Example:
    >>> import gymnasium as gym, mgpo_env
    >>> env = ScriptedFirstTurn(gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 448}), "oracle")
    >>> observation, info = env.reset(seed=0)
    >>> info["turn"], info["box_valid"], observation["history"][2]["role"]
    (1, True, 'assistant')
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np

from .geometry import BoxPolicy, from_view_pixels, original_to_view, smallest_valid_side

Size = tuple[int, int]


def random_box(rng: np.random.Generator, view_size: Size, min_side: float = 28.0, max_side: Optional[float] = None) -> tuple[int, int, int, int]:
    """A free-form box in view pixels, independent of the image.

    Each side is log-uniform between ``min_side`` and ``max_side`` (the view's shorter
    side by default), drawn separately for width and height, and the box's position is
    uniform among the places it fits: every size and place the policy allows can occur.
    """
    width, height = view_size
    top = float(min(width, height) if max_side is None else max_side)
    low = float(min_side) + 1.0  # whole pixels strictly longer than min_side (BoxPolicy's rule)
    if top < low:
        raise ValueError(f"no box side fits between min_side {min_side} and max_side {top}")
    sides = [int(math.floor(math.exp(rng.uniform(math.log(low), math.log(top))))) for _ in range(2)]
    bw, bh = min(max(sides[0], math.ceil(low)), width), min(max(sides[1], math.ceil(low)), height)
    x1, y1 = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
    return x1, y1, x1 + bw, y1 + bh


def oracle_box(target: Sequence[float], view_size: Size, original_size: Size, min_side: float = 28.0) -> tuple[int, int, int, int]:
    """The smallest box in view pixels that holds ``target`` (original pixels) and passes the side rule.

    The target is mapped into the view, rounded outwards to whole pixels, then grown about its
    centre (and shifted back inside the view) until each side is longer than ``min_side``.
    """
    x1, y1, x2, y2 = original_to_view(target, view_size, original_size)
    box = [math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2)]
    need = smallest_valid_side(min_side)
    for lo, hi, limit in ((0, 2, view_size[0]), (1, 3, view_size[1])):
        if box[hi] - box[lo] < need:
            grow = need - (box[hi] - box[lo])
            box[lo] -= grow // 2
            box[hi] += grow - grow // 2
        if box[lo] < 0:
            box[lo], box[hi] = 0, box[hi] - box[lo]
        if box[hi] > limit:
            box[lo], box[hi] = max(0, box[lo] - (box[hi] - limit)), limit
    return box[0], box[1], box[2], box[3]


def box_reply(box: Sequence[float], frame: str, view_size: Size) -> str:
    """A view-pixel box written as a reply in ``frame``, e.g. ``[56,0,112,56]``."""
    coords = from_view_pixels(box, frame, view_size)
    if frame == "pixel" or frame == "norm1000":
        return "[" + ",".join(str(int(round(c))) for c in coords) + "]"
    return "[" + ",".join(f"{c:.3f}" for c in coords) + "]"


def _fixed_box(rule: str) -> Optional[tuple[float, ...]]:
    """The four numbers of a ``fixed:x1,y1,x2,y2`` rule, or None if they are not four finite numbers."""
    try:
        values = tuple(float(v) for v in rule[len("fixed:"):].split(","))
    except ValueError:
        return None
    return values if len(values) == 4 and all(math.isfinite(v) for v in values) else None


def check_rule(rule: str) -> Optional[str]:
    """``None`` if ``rule`` is a rule :class:`ScriptedFirstTurn` plays, else why not."""
    if rule in ("random", "oracle"):
        return None
    if rule.startswith("fixed:"):
        if _fixed_box(rule) is not None:
            return None
        return f"a fixed rule is 'fixed:x1,y1,x2,y2' (in the environment's box frame), got {rule!r}"
    return f"a first-turn rule is 'random', 'oracle' or 'fixed:x1,y1,x2,y2', got {rule!r}"


class ScriptedFirstTurn(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Play turn 1 of a ``two_turn`` episode with a rule's box; the agent only answers.

    Args:
        env: a ``mgpo/HighResVQA-v0`` environment with ``protocol="two_turn"``.
        rule: ``"random"``, ``"oracle"`` or ``"fixed:x1,y1,x2,y2"`` (see the module docstring).
        min_side: the smallest box side the random and oracle rules use; the environment's
            ``box_policy.min_side`` by default, so their boxes are valid.

    ``info["scripted_box"]`` is the rule's reply. The random rule draws from the
    environment's seeded ``np_random``, so ``reset(seed=...)`` makes it repeatable.
    """

    def __init__(self, env: gym.Env, rule: str, min_side: Optional[float] = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, rule=rule, min_side=min_side)
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if getattr(base, "protocol", None) != "two_turn":
            raise ValueError(f"ScriptedFirstTurn needs a two_turn environment, got protocol {getattr(base, 'protocol', None)!r}")
        problem = check_rule(rule)
        if problem:
            raise ValueError(problem)
        self.rule = rule
        fixed = _fixed_box(rule) if rule.startswith("fixed:") else None
        # The fixed rule's reply, written once: its numbers are already in the environment's frame.
        self.fixed_reply = "[" + ",".join(f"{v:g}" for v in fixed) + "]" if fixed is not None else None
        policy: BoxPolicy = getattr(base, "box_policy", BoxPolicy())
        self.min_side = float(policy.min_side if min_side is None else min_side)

    def _reply(self, info: dict[str, Any]) -> str:
        base = self.env.unwrapped
        view_size = tuple(info["model_image_size"])
        frame = base.box_frame
        if self.fixed_reply is not None:
            return self.fixed_reply
        if self.rule == "oracle":
            if info.get("target_box") is None:
                raise ValueError(f"sample {info.get('sample_id')!r} has no annotated box: the oracle rule needs one")
            box = oracle_box(info["target_box"], view_size, info["original_image_size"], self.min_side)  # type: ignore[arg-type]
        else:
            box = random_box(base.np_random, view_size, self.min_side)  # type: ignore[arg-type]
        return box_reply(box, frame, view_size)  # type: ignore[arg-type]

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None) -> tuple[Any, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        reply = self._reply(info)
        observation, _, _, _, info = self.env.step(reply)
        return observation, {**info, "scripted_box": reply}
