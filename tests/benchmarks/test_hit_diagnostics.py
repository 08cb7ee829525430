"""What crops held, and what the same centres would hold at other sizes (benchmarks/emergence/hit_diagnostics.py)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from emergence.hit_diagnostics import COVERAGE_KINDS, accuracy_by_coverage, coverage_kind, coverage_markdown, covered_fraction, hold_if_resized
from mgpo_env.geometry import contains

boxes = st.tuples(st.integers(0, 200), st.integers(0, 200), st.integers(1, 120), st.integers(1, 120)).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))


@settings(max_examples=300, deadline=None)
@given(crop=boxes, target=boxes)
def test_the_covered_share_is_one_exactly_when_the_crop_holds_the_target(crop, target):
    share = covered_fraction(crop, target)
    assert 0.0 <= share <= 1.0
    assert (share == 1.0) == contains(crop, target)
    assert (coverage_kind(crop, target) == "holds") == contains(crop, target)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(boxes, boxes), min_size=1, max_size=8), ratio=st.floats(1.0, 3.0))
def test_resized_holds_match_resizing_each_box_by_hand(pairs, ratio):
    rows = [{"crop_box": crop, "target_box": target} for crop, target in pairs]
    expected = 0
    for crop, target in pairs:
        cx, cy = (crop[0] + crop[2]) / 2, (crop[1] + crop[3]) / 2
        w, h = (target[2] - target[0]) * ratio / 2, (target[3] - target[1]) * ratio / 2
        expected += contains((cx - w - 1e-6, cy - h - 1e-6, cx + w + 1e-6, cy + h + 1e-6), target)
    assert abs(hold_if_resized(rows, [ratio])[ratio] - expected / len(pairs)) < 1e-9
    low, high = hold_if_resized(rows, [ratio, ratio + 0.5]).values()
    assert low <= high


def test_accuracy_is_counted_per_question_type_and_coverage():
    target = (10, 10, 20, 20)
    rows = [
        {"category": "colour", "crop_box": (0, 0, 30, 30), "target_box": target, "correct": True},
        {"category": "colour", "crop_box": (0, 0, 30, 30), "target_box": target, "correct": False},
        {"category": "colour", "crop_box": (12, 10, 30, 30), "target_box": target, "correct": True},  # keeps 0.8
        {"category": "colour", "crop_box": (17, 10, 30, 30), "target_box": target, "correct": False},  # keeps 0.3
        {"category": "checker_half", "crop_box": None, "target_box": target, "correct": True},
        {"category": "checker_half", "crop_box": None, "target_box": None, "correct": True},  # no annotation: left out
    ]
    table = accuracy_by_coverage(rows)
    assert table["colour"] == {"holds": {"episodes": 2, "accuracy": 0.5}, "cuts, keeps > 1/2": {"episodes": 1, "accuracy": 1.0},
                               "cuts, keeps <= 1/2": {"episodes": 1, "accuracy": 0.0}}
    assert table["checker_half"] == {"no valid box": {"episodes": 1, "accuracy": 1.0}}
    lines = coverage_markdown(rows, ratios=(1.5,))
    assert lines[0] == "| question type | " + " | ".join(COVERAGE_KINDS) + " |"
    assert lines[2] == "| checker_half | — | — | — | 1.00 (1) |" and lines[3] == "| colour | 0.50 (2) | 1.00 (1) | 0.00 (1) | — |"
    assert lines[-1].endswith("1.5x: 0.50.")  # centres (15,15) twice, (21,20), (23.5,20): two within 0.25 x 10 px


@settings(max_examples=200, deadline=None)
@given(crop=boxes, target=boxes.filter(lambda b: b[2] - b[0] > 20 and b[3] - b[1] > 20), inset=st.integers(0, 10))
def test_an_inner_hit_needs_the_inset_region_inside_and_a_crop_within_the_cap(crop, target, inset):
    from emergence.hit_diagnostics import inner_hit_rate

    inner = (target[0] + inset, target[1] + inset, target[2] - inset, target[3] - inset)
    small = crop[2] - crop[0] <= 1.8 * (target[2] - target[0]) and crop[3] - crop[1] <= 1.8 * (target[3] - target[1])
    assert inner_hit_rate([{"crop_box": crop, "target_box": target}], inset, 1.8) == float(contains(crop, inner) and small)
    if contains(crop, target) and small:  # a hit on the whole target is a hit on its inside
        assert inner_hit_rate([{"crop_box": crop, "target_box": target}], inset, 1.8) == 1.0
