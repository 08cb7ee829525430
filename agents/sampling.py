"""Sampling whose outcome depends only on a row's own seed, not on the batch.

Batched generation with ``torch.multinomial`` draws from one global stream, so a
rollout's tokens change when the batch around it changes (another process
layout, another batch size, a resumed run). :class:`RowSeededSampler` instead
samples with the Gumbel-max trick from one ``torch.Generator`` per row:

    token = argmax_v (logits_v / T + g_v),   g_v = -log(-log(u_v)),  u_v ~ U(0, 1)

which is an exact sample from ``softmax(logits / T)`` (restricted to the top-p
nucleus when ``top_p < 1``). ``generate`` then runs with ``do_sample=False``,
and every rollout is reproducible from ``(seed, step, question, rollout, turn)``
alone: 1 process or 2, batch of 8 or 64, straight or resumed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor


def row_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys (numpy's SeedSequence hashing)."""
    low, high = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(low) | (int(high) << 32)) & ((1 << 63) - 1)


def nucleus_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Boolean mask of the tokens outside the top-p nucleus (never the most likely one)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    outside_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
    outside = torch.zeros_like(outside_sorted)
    return outside.scatter(-1, order, outside_sorted)


class RowSeededSampler(LogitsProcessor):
    """A logits processor that turns greedy decoding into per-row seeded sampling.

    Args:
        seeds: one seed per row of the batch, in batch order.
        temperature: softmax temperature (> 0).
        top_p: nucleus threshold in (0, 1].
    """

    def __init__(self, seeds: Sequence[int], temperature: float = 1.0, top_p: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"RowSeededSampler has {len(self.generators)} seeds but the batch has {scores.shape[0]} rows")
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            logits = logits.masked_fill(nucleus_mask(logits, self.top_p), float("-inf"))
        vocab = logits.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators]).to(logits.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
        return logits + gumbel
