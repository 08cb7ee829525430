"""Rollouts with scripted replies, for tests that need exact, known conversations from the tiny model."""

import gymnasium as gym
import torch
from transformers import LogitsProcessor


class ForceReplies(LogitsProcessor):
    """Makes each row of a batch generate exactly the given ids (test-only constrained decoding)."""

    def __init__(self, replies: list[list[int]]) -> None:
        self.replies = replies
        self.position = 0

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(self.replies):
            forced[row, ids[min(self.position, len(ids) - 1)]] = 0.0
        self.position += 1
        return forced


def forcing(processor, reply_for):
    """An ``extra_logits_processors`` factory forcing ``reply_for(trajectory, turn)`` + end-of-turn."""
    tokenizer = processor.tokenizer
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)

    def factory(trajectories, turn):
        return [ForceReplies([tokenizer.encode(reply_for(t, turn), add_special_tokens=False) + [eos] for t in trajectories])]

    return factory


def box_reply(trajectory, turn):
    if turn == 0:
        size = 40 + 30 * trajectory.rollout  # different crop sizes per row (the view is 168 px)
        return f'[{{"bbox_2d": [10, 20, {10 + size}, {20 + size}], "label": "x"}}]'
    return "It is \\boxed{A}"


def env_maker(config, **kwargs):
    """Environments on the task and image budget of a training ``config``."""
    budget = {"min_pixels": config.min_pixels, "max_pixels": config.max_pixels}
    return lambda: gym.make("mgpo/HighResVQA-v0", dataset_kwargs=config.dataset_kwargs, **budget, **kwargs)
