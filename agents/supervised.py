"""Supervised fine-tuning on scripted episodes, in the same token space as rollouts.

A scripted episode is played through the environment with given replies; it
becomes a :class:`~mgpo_agents.trajectory.Trajectory` exactly like a rollout
(prompt and environment messages rendered by the chat template, each reply its
own ids plus the end-of-turn token), so what supervised training teaches is
what the RL trainer later samples and scores. Which replies carry the loss is
chosen per turn; the others are context.

``shown_replies`` lets the conversation *show* a reply different from the one
the environment acted on. The miniature experiment uses it to train reading on
crops that contain the target while the turn-1 box in the conversation is a
random one, so no training text pairs the target's position with anything.

Example:
    >>> import gymnasium as gym, mgpo_env
    >>> from mgpo_agents.tiny_model import build_tiny_qwen25vl
    >>> from mgpo_agents.qwen_processor import load_processor
    >>> import tempfile
    >>> processor = load_processor(build_tiny_qwen25vl(tempfile.mkdtemp()))
    >>> env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 448}, min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    >>> tokens = ConversationTokenizer(processor)
    >>> t = scripted_trajectory(tokens, env, 0, ["[0,0,112,112]", "\\\\boxed{A}"], train_turns=[1])
    >>> [s.generated for s in t.segments], t.replies
    ([False, False, False, True], ['[0,0,112,112]', '\\\\boxed{A}'])
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import torch

from .mgpo_loss import pack, token_logprobs
from .trajectory import ConversationTokenizer, Segment, Trajectory


def reply_ids(tokens: ConversationTokenizer, text: str) -> list[int]:
    """The ids of one reply as the model would generate it: its text, then the end-of-turn token."""
    return tokens.tokenizer.encode(text, add_special_tokens=False) + [tokens.end_of_turn_id]


def scripted_trajectory(
    tokens: ConversationTokenizer,
    env: gym.Env,
    index: int,
    replies: Sequence[str],
    *,
    train_turns: Sequence[int],
    shown_replies: Optional[Sequence[Optional[str]]] = None,
) -> Trajectory:
    """Play sample ``index`` with ``replies`` and record it as a trajectory.

    ``train_turns`` are the 0-based replies that carry the loss. ``shown_replies[k]``
    (when not None) replaces reply ``k``'s ids in the trajectory while the environment
    still acts on ``replies[k]``. Replies after the episode ends are refused.
    """
    if shown_replies is not None and len(shown_replies) != len(replies):
        raise ValueError(f"shown_replies has {len(shown_replies)} entries for {len(replies)} replies")
    env.reset(options={"index": int(index)})
    prompt = tokens.prompt(env.unwrapped.chat_messages())
    trajectory = Trajectory(group=0, rollout=0, sample_index=int(index))
    trajectory.segments.append(Segment(prompt["input_ids"][0].tolist(), generated=False))
    trajectory.add_images(prompt.get("pixel_values"), prompt.get("image_grid_thw"))
    for turn, reply in enumerate(replies):
        shown = shown_replies[turn] if shown_replies is not None and shown_replies[turn] is not None else reply
        trajectory.segments.append(Segment(reply_ids(tokens, shown), generated=turn in train_turns))
        trajectory.replies.append(shown)
        before = len(env.unwrapped.chat_messages())
        _, reward, terminated, truncated, info = env.step(reply)
        trajectory.reward, trajectory.info = float(reward), dict(info)
        if terminated or truncated:
            if turn + 1 < len(replies):
                raise ValueError(f"the episode ended after reply {turn + 1} of {len(replies)}")
            break
        if turn + 1 < len(replies):  # the environment's message is context for the next reply
            segment = tokens.environment_segment(env.unwrapped.chat_messages(), before + 1)
            trajectory.segments.append(Segment(segment["input_ids"][0].tolist(), generated=False))
            trajectory.add_images(segment.get("pixel_values"), segment.get("image_grid_thw"))
    return trajectory


def supervised_loss(model: Any, trajectories: Sequence[Trajectory], tokens: ConversationTokenizer, pad_id: int) -> tuple[torch.Tensor, int]:
    """Token-mean negative log-likelihood of the trained replies, and their token count."""
    parameter = next(model.parameters())
    batch = pack(trajectories, pad_id, tokens.image_token_id, parameter.device, parameter.dtype)
    logp, _ = token_logprobs(model, batch)
    return -logp.mean(), int(logp.numel())


def fit(
    model: Any,
    tokens: ConversationTokenizer,
    make_batch: Callable[[int], Sequence[Trajectory]],
    *,
    steps: int,
    learning_rate: float,
    pad_id: int,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    warmup_steps: int = 0,
    schedule: str = "cosine",
    on_step: Optional[Callable[[int, float], Optional[bool]]] = None,
    progress: bool = True,
    description: str = "supervised",
) -> list[float]:
    """AdamW on ``make_batch(step)`` for up to ``steps`` steps; returns the losses.

    ``schedule``: ``"cosine"`` (linear warm-up, then cosine decay to a tenth) or
    ``"constant"`` (linear warm-up, then flat: for gated stages of unknown length,
    whose end is decided by ``on_step``). ``on_step(step, loss)`` returning True
    stops the training after that step.
    """
    from tqdm.auto import tqdm

    if steps < 0 or learning_rate <= 0:
        raise ValueError(f"need steps >= 0 and learning_rate > 0, got steps={steps}, learning_rate={learning_rate}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress_fraction = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_fraction))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    losses: list[float] = []
    model.train()
    started = time.perf_counter()
    with tqdm(total=steps, desc=description, disable=not progress, dynamic_ncols=True) as bar:
        for step in range(steps):
            batch = make_batch(step)
            loss, _ = supervised_loss(model, batch, tokens, pad_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", seconds=f"{time.perf_counter() - started:.0f}")
            if on_step is not None and on_step(step, losses[-1]):
                break
    model.eval()
    return losses


__all__ = ["reply_ids", "scripted_trajectory", "supervised_loss", "fit"]
