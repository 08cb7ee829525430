"""Scripted policies that speak the environment's text protocol.

They need no model, so they serve the demo, tests and benchmarks, and give
reference points: :class:`RandomPolicy` is what an untrained model's *format*
looks like with chance-level content; :class:`OracleBoxPolicy` boxes the
annotated target (an upper bound for grounding, not for reading).

A policy is a callable ``policy(observation, info) -> str``.

Example:
    >>> import gymnasium as gym, mgpo_env
    >>> env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 1024})
    >>> policy = OracleBoxPolicy(seed=0)
    >>> obs, info = env.reset(seed=0)
    >>> obs, _, _, _, info = env.step(policy(obs, info))
    >>> info["box_valid"]
    True
"""

from __future__ import annotations

import string
from typing import Any, Mapping, Optional

import numpy as np

from mgpo_env.box_parser import format_box


def _answer(info: Mapping[str, Any], rng: np.random.Generator, choices: int) -> str:
    letter = string.ascii_uppercase[int(rng.integers(max(1, choices)))]
    return f"I compare the options with what I see. \\boxed{{{letter}}}"


def _is_grounding_turn(observation: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    # Two-turn: the first reply grounds. Single-turn: never. Free: these policies ground once.
    return info["protocol"] != "single_turn" and int(observation["turn"]) == 0


class RandomPolicy:
    """A uniformly random box of at least ``min_side`` view pixels, then a random letter."""

    def __init__(self, seed: Optional[int] = None, min_side: int = 56, num_choices: int = 4) -> None:
        self.rng = np.random.default_rng(seed)
        self.min_side = min_side
        self.num_choices = num_choices

    def __call__(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        if not _is_grounding_turn(observation, info):
            return _answer(info, self.rng, self.num_choices)
        w, h = info["model_image_size"]
        bw = int(self.rng.integers(min(self.min_side, w), w + 1))
        bh = int(self.rng.integers(min(self.min_side, h), h + 1))
        x = int(self.rng.integers(0, w - bw + 1))
        y = int(self.rng.integers(0, h - bh + 1))
        return "The detail is probably here.\n" + format_box((x, y, x + bw, y + bh), "guess")


class OracleBoxPolicy:
    """Boxes the annotated target (plus ``margin`` original pixels), then guesses a letter.

    It reads the annotation from ``info["target_box"]``: an upper bound for the
    grounding step only. Samples without an annotation get the whole image.
    """

    def __init__(self, seed: Optional[int] = None, margin: float = 64.0, num_choices: int = 4) -> None:
        self.rng = np.random.default_rng(seed)
        self.margin = margin
        self.num_choices = num_choices

    def __call__(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> str:
        if not _is_grounding_turn(observation, info):
            return _answer(info, self.rng, self.num_choices)
        (vw, vh), (ow, oh) = info["model_image_size"], info["original_image_size"]
        target = info.get("target_box") or (0, 0, ow, oh)
        sx, sy = vw / ow, vh / oh
        box = (
            max(0.0, (target[0] - self.margin) * sx),
            max(0.0, (target[1] - self.margin) * sy),
            min(float(vw), (target[2] + self.margin) * sx),
            min(float(vh), (target[3] + self.margin) * sy),
        )
        # Grow a too-small box around its centre to the reference's 28-pixel minimum.
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half_w, half_h = max((box[2] - box[0]) / 2, 15.0), max((box[3] - box[1]) / 2, 15.0)
        cx, cy = min(max(cx, half_w), vw - half_w), min(max(cy, half_h), vh - half_h)
        return "The key region:\n" + format_box((cx - half_w, cy - half_h, cx + half_w, cy + half_h), "target")
