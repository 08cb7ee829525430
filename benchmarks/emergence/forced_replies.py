"""Make chosen rows of a batch generate given ids: the oracle first turn of the miniature's diagnostics."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from transformers import LogitsProcessor


class ForcedReplies(LogitsProcessor):
    """Make chosen rows generate given ids (then stop), for diagnostics such as an oracle first turn.

    ``forced[row]`` is the ids row ``row`` must produce (its end-of-turn token included),
    or None to leave the row free. ``prompt_width`` is the width of the padded batch
    ``generate`` started from, so the step number is ``input_ids.shape[1] - prompt_width``.
    Use it through :class:`RolloutEngine`'s ``extra_logits_processors`` with greedy decoding.
    """

    def __init__(self, forced: Sequence[Optional[Sequence[int]]], prompt_width: int) -> None:
        self.forced = [list(f) if f is not None else None for f in forced]
        self.prompt_width = int(prompt_width)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_width
        scores = scores.clone()
        for row, ids in enumerate(self.forced):
            if ids is not None and step < len(ids):
                keep = scores[row, ids[step]].clone()
                scores[row] = float("-inf")
                scores[row, ids[step]] = keep if torch.isfinite(keep) else 0.0
        return scores
