"""Why the hit rate moves or not: what the crops held, and what the same box centres would hold at other sizes.

A hit needs the crop to hold the *whole* target (no larger than the hit cap); the reward
needs only a right answer. These two measures, over a run's held-out episodes
(``eval/*.jsonl`` rows: ``crop_box``, ``target_box``, ``category``, ``correct``), tell the
two apart:

* :func:`accuracy_by_coverage`: accuracy per question type for crops that hold the target,
  cut it but keep more than half of it, keep half or less, or were no valid box;
* :func:`hold_if_resized`: the share of valid boxes that would hold the target if each kept
  its centre and took a side of ``ratio`` x the target's, i.e. whether precision or size is
  what keeps boxes from holding it;
* :func:`inner_hit_rate`: the share of episodes whose crop holds the target less its frame
  (where the checker is) and is no larger than the hit cap: the region an answer needs,
  beside the hit rate's whole target. A diagnostic, not the issue's hit rate.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

COVERAGE_KINDS = ("holds", "cuts, keeps > 1/2", "cuts, keeps <= 1/2", "no valid box")


def covered_fraction(crop: Sequence[float], target: Sequence[float]) -> float:
    """The share of ``target``'s area inside ``crop`` (boxes as x1, y1, x2, y2).

    >>> covered_fraction((0, 0, 10, 10), (5, 0, 15, 10))
    0.5
    >>> covered_fraction((0, 0, 10, 10), (20, 20, 30, 30))
    0.0
    """
    width = max(0.0, min(crop[2], target[2]) - max(crop[0], target[0]))
    height = max(0.0, min(crop[3], target[3]) - max(crop[1], target[1]))
    return width * height / ((target[2] - target[0]) * (target[3] - target[1]))


def coverage_kind(crop: Optional[Sequence[float]], target: Sequence[float]) -> str:
    """Which of :data:`COVERAGE_KINDS` an episode's crop falls in.

    >>> coverage_kind((0, 0, 10, 10), (2, 2, 8, 8)), coverage_kind((0, 0, 10, 10), (4, 0, 12, 10)), coverage_kind(None, (0, 0, 1, 1))
    ('holds', 'cuts, keeps > 1/2', 'no valid box')
    """
    if not crop:
        return COVERAGE_KINDS[3]
    share = covered_fraction(crop, target)
    return COVERAGE_KINDS[0] if share >= 1.0 else COVERAGE_KINDS[1] if share > 0.5 else COVERAGE_KINDS[2]


def accuracy_by_coverage(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{category: {kind: {"episodes": n, "accuracy": a}}}`` over episodes with an annotated target."""
    table: dict[str, dict[str, list[bool]]] = {}
    for row in rows:
        if row.get("target_box"):
            kind = coverage_kind(row.get("crop_box"), row["target_box"])
            table.setdefault(row["category"], {}).setdefault(kind, []).append(bool(row["correct"]))
    return {category: {kind: {"episodes": len(kinds[kind]), "accuracy": sum(kinds[kind]) / len(kinds[kind])}
                       for kind in COVERAGE_KINDS if kind in kinds} for category, kinds in sorted(table.items())}


def hold_if_resized(rows: Iterable[dict[str, Any]], ratios: Sequence[float]) -> dict[float, float]:
    """For each ratio, the share of valid boxes that would hold the target with their own centre and a side of
    ``ratio`` x the target's (per axis).

    >>> hold_if_resized([{"crop_box": (0, 0, 10, 10), "target_box": (2, 0, 10, 8)}], [1.0, 1.5])
    {1.0: 0.0, 1.5: 1.0}
    """
    offsets = []
    for row in rows:
        crop, target = row.get("crop_box"), row.get("target_box")
        if crop and target:
            offsets.append([abs((crop[a] + crop[a + 2]) - (target[a] + target[a + 2])) / 2 / (target[a + 2] - target[a]) for a in (0, 1)])
    if not offsets:
        return {ratio: float("nan") for ratio in ratios}
    return {ratio: sum(all(o <= (ratio - 1) / 2 + 1e-9 for o in pair) for pair in offsets) / len(offsets) for ratio in ratios}


def inner_hit_rate(rows: Sequence[dict[str, Any]], inset: float, cap: float) -> float:
    """The share of ``rows`` whose crop holds the target shrunk by ``inset`` on every side and is at most ``cap`` x
    the target's side on both axes (episodes without a valid box count as misses).

    >>> rows = [{"crop_box": (8, 8, 32, 32), "target_box": (0, 0, 40, 40)}, {"crop_box": None, "target_box": (0, 0, 40, 40)}]
    >>> inner_hit_rate(rows, inset=10, cap=1.8), inner_hit_rate(rows, inset=5, cap=1.8)
    (0.5, 0.0)
    """
    def hit(crop: Optional[Sequence[float]], target: Sequence[float]) -> bool:
        if not crop:
            return False
        inner = (target[0] + inset, target[1] + inset, target[2] - inset, target[3] - inset)
        small = all(crop[a + 2] - crop[a] <= cap * (target[a + 2] - target[a]) for a in (0, 1))
        return small and covered_fraction(crop, inner) >= 1.0

    annotated = [row for row in rows if row.get("target_box")]
    return sum(hit(row.get("crop_box"), row["target_box"]) for row in annotated) / len(annotated) if annotated else float("nan")


def coverage_markdown(rows: Sequence[dict[str, Any]], ratios: Sequence[float] = (1.3, 1.5, 1.8),
                      inner: Optional[tuple[float, float]] = None) -> list[str]:
    """The measures as Markdown lines: a table of accuracy by coverage, a line of hold rates if resized, and with
    ``inner`` = (inset, cap) the rate of crops that hold the target less its frame."""
    table = accuracy_by_coverage(rows)
    lines = ["| question type | " + " | ".join(COVERAGE_KINDS) + " |", "|---|" + "---|" * len(COVERAGE_KINDS)]
    for category, kinds in table.items():
        cells = [f"{kinds[k]['accuracy']:.2f} ({kinds[k]['episodes']})" if k in kinds else "—" for k in COVERAGE_KINDS]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    resized = hold_if_resized(rows, ratios)
    lines += ["", "The same box centres would hold the target at these sides (x the target's): "
              + ", ".join(f"{ratio:g}x: {share:.2f}" for ratio, share in resized.items()) + "."]
    if inner is not None:
        lines += ["", f"Crops that hold the target less its {inner[0]:g}-pixel frame (the checker's region) and are at most {inner[1]:g}x "
                  f"the target's side: {inner_hit_rate(rows, *inner):.2f} of episodes."]
    return lines
