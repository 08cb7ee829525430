"""The best-fixed-box baseline's search (benchmarks/emergence/fixed_box_search.py)."""

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from emergence.fixed_box_search import candidate_boxes, expected_accuracy, fixed_rule, interpolated_reader, screen
from mgpo_env.scripted_turn import check_rule


@given(view=st.integers(60, 400), side_share=st.floats(0.1, 1.0), positions=st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_candidates_are_squares_inside_the_view_spread_to_both_edges(view, side_share, positions):
    side = max(1, int(view * side_share))
    boxes = candidate_boxes(view, sides=(side,), positions=positions)
    assert len(boxes) == len(set(boxes)) <= positions**2
    for x1, y1, x2, y2 in boxes:
        assert x2 - x1 == y2 - y1 == side and 0 <= x1 and 0 <= y1 and x2 <= view and y2 <= view
    if positions > 1:  # the grid reaches both edges of the view
        assert min(b[0] for b in boxes) == 0 and max(b[2] for b in boxes) == view


def test_a_side_larger_than_the_view_is_refused():
    with pytest.raises(ValueError, match="box side"):
        candidate_boxes(224, sides=(300,))


def test_expected_accuracy_counts_reads_only_where_the_box_holds_the_target():
    read = lambda ratio: 0.9 if ratio <= 1.3 else 0.5  # noqa: E731
    targets = [(10, 10, 40, 40), (10, 10, 30, 30), (100, 100, 130, 130), (5, 5, 45, 45)]
    box = (5, 5, 45, 45)  # 40 px: 1.33x the first, 2x the second, misses the third, 1x the fourth
    assert expected_accuracy(box, targets, read, 0.25) == pytest.approx((0.5 + 0.5 + 0.25 + 0.9) / 4)


def test_screen_finds_the_corner_where_targets_gather():
    # every target sits in the top-left corner of a 2240 canvas (view 224): the best box is small and there
    targets = [(100 + 7 * k, 120, 100 + 7 * k + 224, 344) for k in range(10)]
    read = interpolated_reader({1.1: 0.9, 2.0: 0.3}, chance=0.25)
    ranked = screen(targets, (2240, 2240), (224, 224), read, 0.25, candidate_boxes(224))
    score, best = ranked[0]
    # the smallest grid box holding them all is the 40-pixel one at the origin (29-pixel boxes start at
    # 0, 24, 49, ... and none holds a target reaching y = 34.4): 40 / 22.4 = 1.79x the targets' side
    assert best == (0, 0, 40, 40)
    weight = math.log(40 / 22.4 / 1.1) / math.log(2.0 / 1.1)
    assert score == pytest.approx(0.9 + weight * (0.3 - 0.9))
    # a box far from every target scores chance
    assert dict((b, s) for s, b in ranked)[(168, 168, 224, 224)] == pytest.approx(0.25)


def test_interpolated_reader_is_linear_in_log_ratio_and_chance_past_the_curve():
    read = interpolated_reader({1.0: 1.0, 4.0: 0.0}, chance=0.25)
    assert read(0.5) == 1.0 and read(2.0) == pytest.approx(0.5)
    assert read(math.sqrt(2)) == pytest.approx(0.75) and read(8.0) == 0.25


def test_fixed_rule_is_a_rule_the_scripted_first_turn_plays():
    rule = fixed_rule((0, 16, 56, 72))
    assert rule == "fixed:0,16,56,72" and check_rule(rule) is None


def test_docstring_examples():
    import doctest

    import emergence.fixed_box_search as module

    assert doctest.testmod(module).failed == 0
