"""The MGPO objective, top to bottom.

MGPO is GRPO applied to whole multi-turn episodes. For a question q, G episodes
o_1..o_G are played (each: box reply, environment crop message, answer reply)
and scored with a binary reward r_i. Then, with the published defaults:

1. Group-relative advantage, one scalar per episode, broadcast to every token
   the model generated in it (both replies, each end-of-turn token included):

       A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)              eps = 1e-6

   A group whose rewards are all equal has A = 0: no policy-gradient signal.

2. Per generated token t, with pi the policy being trained, pi_old the policy
   that played the episodes and pi_ref the frozen starting model:

       ratio_t   = pi(o_t | o_<t) / pi_old(o_t | o_<t)
       pg_t      = max(-A * ratio_t, -A * clip(ratio_t, 1 - c, 1 + c))    c = 0.2
       kl_t      = exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1     ("k3", >= 0)
       H_t       = entropy of pi(. | o_<t)

3. Token-mean over every generated token of the mini-batch (all episodes pooled):

       L = sum_t (pg_t + beta * kl_t - alpha * H_t) / (number of generated tokens)
                                                                 beta = 0.01, alpha = 0.001

Tokens the environment inserted (the crop message and its image tokens) and the
prompt have mask 0: they are context, never targets. Log-probabilities use
``logits / temperature``, the distribution the episodes were sampled from, and
the LM head runs only at the positions that predict a generated token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .trajectory import Trajectory, model_inputs


# ------------------------------------------------------------------ advantages
def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, int]:
    """``(r - group mean) / (group std + eps)`` per episode, and how many groups had equal rewards.

    ``std`` is the sample standard deviation (Bessel-corrected, ``torch.std``'s default),
    as in the published reference implementation.

    Example:
        >>> adv, flat = group_advantages(torch.tensor([1., 0., 0., 1., 1., 1.]), torch.tensor([0, 0, 0, 1, 1, 1]))
        >>> [round(a, 3) for a in adv.tolist()], flat
        ([1.155, -0.577, -0.577, 0.0, 0.0, 0.0], 1)
    """
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    flat_groups = 0
    for group in torch.unique(groups):
        members = groups == group
        r = rewards[members].float()
        std = r.std() if r.numel() > 1 else torch.tensor(0.0)
        advantages[members] = (r - r.mean()) / (std + eps)
        flat_groups += int(bool((r == r[0]).all()))
    return advantages, flat_groups


# --------------------------------------------------------------------- batches
@dataclass
class PackedBatch:
    """Right-padded trajectories ready for one forward pass."""

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, mm_token_type_ids, pixel_values, image_grid_thw
    predicts_generated: torch.Tensor  # (B, L) bool: position t predicts a generated token t + 1
    targets: torch.Tensor  # (N,) the generated tokens, in row-major order of predicts_generated
    token_rows: torch.Tensor  # (N,) which trajectory each target belongs to


def pack(trajectories: Sequence[Trajectory], pad_id: int, image_token_id: int, device: Any = "cpu", dtype: Any = None) -> PackedBatch:
    """Right-pad trajectories and mark the positions whose next token the model generated."""
    inputs = model_inputs(trajectories, pad_id, image_token_id, left_pad=False, device=device, dtype=dtype)
    width = inputs["input_ids"].shape[1]
    generated = torch.zeros((len(trajectories), width), dtype=torch.bool)
    for row, trajectory in enumerate(trajectories):
        generated[row, : len(trajectory.loss_mask)] = torch.tensor(trajectory.loss_mask, dtype=torch.bool)
    predicts_generated = torch.zeros_like(generated)
    predicts_generated[:, :-1] = generated[:, 1:]
    input_ids = inputs["input_ids"].cpu()
    rows = torch.arange(len(trajectories)).unsqueeze(1).expand_as(generated)
    return PackedBatch(inputs, predicts_generated.to(device), input_ids[generated].to(device), rows[generated].to(device))


def token_logprobs(
    model: Any, batch: PackedBatch, temperature: float = 1.0, with_entropy: bool = False, full_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the generated tokens, LM head at those positions only.

    ``logits_to_keep`` with a boolean (B, L) mask makes the model project just the
    selected hidden states onto the vocabulary, which is what keeps a 151K-token
    vocabulary affordable. ``full_logits=True`` computes every position's logits
    and selects afterwards (the usual way; kept for comparison and benchmarks).
    """
    if full_logits:
        output = model(**batch.inputs, use_cache=False)
        logits = output.logits[batch.predicts_generated].float() / temperature
    else:
        output = model(**batch.inputs, logits_to_keep=batch.predicts_generated, use_cache=False)
        logits = output.logits.float() / temperature  # (N, vocab)
    log_probs = torch.log_softmax(logits, dim=-1)
    chosen = log_probs.gather(1, batch.targets.unsqueeze(1)).squeeze(1)
    entropy = -(log_probs.exp() * log_probs).sum(-1) if with_entropy else None
    return chosen, entropy


# ------------------------------------------------------------------------ loss
@dataclass
class LossTerms:
    loss: torch.Tensor  # what to backpropagate (already divided by the token count given)
    policy: torch.Tensor  # summed terms, for logging
    kl: torch.Tensor
    entropy: torch.Tensor
    clipped: torch.Tensor  # number of tokens whose ratio was clipped
    tokens: int


def mgpo_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    entropy: torch.Tensor | None,
    advantages: torch.Tensor,
    *,
    clip_ratio: float,
    kl_coef: float,
    entropy_coef: float,
    normaliser: float,
) -> LossTerms:
    """The per-token objective of the module docstring, summed and divided by ``normaliser``.

    ``normaliser`` is the number of generated tokens in the whole mini-batch (all
    micro-batches, all processes), so that accumulating micro-batch gradients gives
    the token-mean of step 3.
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    policy = torch.maximum(unclipped, clipped)
    total = policy
    if ref_logp is not None and kl_coef > 0:
        log_ref_ratio = ref_logp - logp
        kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
        total = total + kl_coef * kl
    else:
        kl = torch.zeros_like(logp)
    if entropy is not None and entropy_coef > 0:
        total = total - entropy_coef * entropy
    ent = entropy if entropy is not None else torch.zeros_like(logp)
    was_clipped = ((ratio < 1.0 - clip_ratio) | (ratio > 1.0 + clip_ratio)).float()
    return LossTerms(
        loss=total.sum() / normaliser,
        policy=policy.detach().sum(),
        kl=kl.detach().sum(),
        entropy=ent.detach().sum(),
        clipped=was_clipped.sum(),
        tokens=int(logp.numel()),
    )
