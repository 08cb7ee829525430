"""Summaries of evaluated episodes: accuracy, hits, tight hits, IoU and area ratios."""

import math
import statistics

import pytest

from mgpo_agents.evaluation import summarise


def _row(crop, target, correct=True, category="c"):
    from mgpo_env.geometry import box_area, contains, iou, side_ratio

    return {
        "category": category,
        "correct": correct,
        "box_valid": crop is not None,
        "crop_box": crop,
        "target_box": target,
        "hit": bool(crop and target and contains(crop, target)),
        "iou": iou(crop, target) if crop and target else (0.0 if target else None),
        "side_ratio": side_ratio(crop, target) if crop and target else None,
        "area_ratio": box_area(crop) / box_area(target) if crop and target else None,
    }


def test_tight_hits_count_only_crops_that_hold_the_target_within_the_cap():
    target = [100, 100, 120, 120]  # a 20-pixel target
    rows = [
        _row([95, 95, 120, 120], target),  # holds it, 25 pixels: 1.25x
        _row([90, 90, 130, 130], target),  # holds it, 40 pixels: 2x
        _row([105, 100, 125, 120], target, correct=False),  # 1x but misses 5 pixels
        _row(None, target, correct=False),  # no valid box
        _row([0, 0, 30, 30], None, category="d"),  # nothing annotated: outside the grounding figures
    ]
    summary = summarise(rows, max_side_ratio=1.25)
    assert summary["accuracy"] == pytest.approx(3 / 5)
    assert summary["valid_box_rate"] == pytest.approx(4 / 5)
    assert summary["annotated_episodes"] == 4
    assert summary["hit_rate"] == pytest.approx(2 / 4)
    assert summary["tight_hit_rate"] == pytest.approx(1 / 4)
    assert summary["max_side_ratio"] == 1.25
    # areas over the target's 400 square pixels, for the three annotated rows with a crop
    assert summary["median_area_ratio"] == pytest.approx(statistics.median([625 / 400, 1600 / 400, 400 / 400]))
    expected_iou = (400 / 625 + 400 / 1600 + 300 / 500) / 4
    assert summary["mean_iou"] == pytest.approx(expected_iou)
    assert summarise(rows, max_side_ratio=2.0)["tight_hit_rate"] == pytest.approx(2 / 4)


def test_without_a_cap_or_annotations_the_grounding_figures_say_so():
    rows = [_row([0, 0, 30, 30], None)]
    summary = summarise(rows)
    assert "tight_hit_rate" not in summary
    assert summary["median_area_ratio"] is None
    assert math.isnan(summary["hit_rate"]) and math.isnan(summary["mean_iou"])
