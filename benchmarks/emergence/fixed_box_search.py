"""The best fixed box: an image-independent turn-1 policy, found by search on training questions.

A baseline that could win without grounding: if targets sit more often in some part of
the canvas, one box there, used on every image, reads some of them. The search runs in
two passes so that the model is only asked about a handful of boxes:

1. **screen** every square box of a grid of sides and positions on the training
   questions' annotated targets alone: the expected accuracy of a reader whose accuracy
   at each crop ratio is ``read(ratio)`` (the leak sweep's curve), and chance elsewhere;
2. **confirm** the best few with the model itself: greedy episodes with turn 1 fixed to
   the box (:func:`fixed_rule`, played by ``mgpo_env.scripted_turn.ScriptedFirstTurn``),
   keeping the one with the highest accuracy. That pass needs the experiment's model and
   runs there; this module screens.

Boxes are in view pixels; ``fixed_rule`` writes one as ``mgpo train --first-turn``'s rule.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from mgpo_env.geometry import contains, original_to_view, side_ratio

Box = tuple[int, int, int, int]


def candidate_boxes(view: int = 224, sides: Sequence[int] = (29, 40, 56, 80, 112, 160, 224), positions: int = 9) -> list[Box]:
    """Square boxes of each side at ``positions`` evenly spaced places per axis (fewer where they coincide).

    >>> boxes = candidate_boxes(224, sides=(224, 112), positions=3)
    >>> boxes[0], len(boxes)
    ((0, 0, 224, 224), 10)
    """
    boxes: list[Box] = []
    for side in sides:
        if not 0 < side <= view:
            raise ValueError(f"a box side must be in (0, {view}], got {side}")
        room = view - side
        starts = sorted({round(room * k / (positions - 1)) for k in range(positions)}) if positions > 1 else [room // 2]
        boxes += [(x, y, x + side, y + side) for y in starts for x in starts]
    return boxes


def expected_accuracy(box: Sequence[float], targets: Sequence[Sequence[float]], read: Callable[[float], float], chance: float) -> float:
    """Mean over ``targets`` (view pixels) of ``read(side ratio)`` where ``box`` holds the target, else ``chance``.

    >>> expected_accuracy((0, 0, 30, 30), [(0, 0, 20, 20), (100, 100, 120, 120)], lambda r: 1.0 if r <= 1.5 else 0.25, 0.25)
    0.625
    """
    total = 0.0
    for target in targets:
        total += read(side_ratio(box, target)) if contains(box, target) else chance
    return total / max(len(targets), 1)


def screen(targets: Sequence[Sequence[float]], original_size: tuple[int, int], view_size: tuple[int, int],
           read: Callable[[float], float], chance: float, candidates: Sequence[Box]) -> list[tuple[float, Box]]:
    """Every candidate with its expected accuracy on ``targets`` (original pixels), best first."""
    in_view = [original_to_view(t, view_size, original_size) for t in targets]
    scored = [(expected_accuracy(box, in_view, read, chance), box) for box in candidates]
    return sorted(scored, key=lambda item: (-item[0], item[1]))


def interpolated_reader(curve: dict[float, float], chance: float) -> Callable[[float], float]:
    """A reader's accuracy at any ratio from its curve at some ratios (linear in log ratio; chance past the last)."""
    ratios = sorted(curve)
    logs, accuracies = np.log(ratios), [curve[r] for r in ratios]

    def read(ratio: float) -> float:
        return float(np.interp(math.log(ratio), logs, accuracies, right=chance))

    return read


def fixed_rule(box: Sequence[int]) -> str:
    """``box`` as a ``fixed:x1,y1,x2,y2`` first-turn rule (view pixels, the ``pixel`` frame)."""
    return "fixed:" + ",".join(str(int(v)) for v in box)
