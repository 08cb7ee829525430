"""The leak sweep's geometry and reader (benchmarks/emergence/leak_sweep.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from emergence.leak_sweep import SweepSettings, at_chance_bound, crop_around, markdown_table, sweep, target_features, target_region


@settings(max_examples=200, deadline=None)
@given(
    x=st.integers(0, 1400), y=st.integers(0, 1400), side=st.integers(20, 300),
    ratio=st.floats(1.0, 10.0), u=st.floats(0, 1), v=st.floats(0, 1),
)
def test_a_crop_holds_the_target_at_the_asked_size(x, y, side, ratio, u, v):
    canvas = (1568, 1568)
    target = (x, y, min(x + side, 1568), min(y + side, 1568))
    box = crop_around(target, ratio, (u, v), canvas)
    assert 0 <= box[0] and 0 <= box[1] and box[2] <= canvas[0] and box[3] <= canvas[1]
    assert box[0] <= target[0] and box[1] <= target[1] and box[2] >= target[2] and box[3] >= target[3]
    wanted = min(max(target[2] - target[0], target[3] - target[1]) * ratio, canvas[0])
    assert abs((box[2] - box[0]) - wanted) <= 2 and abs((box[3] - box[1]) - wanted) <= 2


def test_the_target_region_scales_with_the_shown_crop():
    # A 400-pixel crop shown at 200: the target 100..300 minus an inset of 10 lands at 55..145.
    assert target_region((0, 0, 400, 400), (100, 100, 300, 300), (200, 200), inset=10) == (55, 55, 145, 145)


def test_features_see_the_checker_axis_and_the_half():
    gray = np.full((64, 64, 3), 128, np.uint8)
    checker = gray.copy()
    parity = (np.add.outer(np.arange(64), np.arange(32)) % 2).astype(bool)
    checker[:, 32:][parity] = (160, 96, 96)
    checker[:, 32:][~parity] = (96, 160, 160)
    plain, right = target_features(Image.fromarray(gray), (0, 0, 64, 64)), target_features(Image.fromarray(checker), (0, 0, 64, 64))
    # The order: 5 areas (all, top, bottom, left, right) x (3 means, 6 covariances, 6 residue covariances).
    residue_red = lambda f, area: f[area * 15 + 9]  # noqa: E731
    assert residue_red(plain, 0) == 0 and residue_red(right, 4) > 100 * max(residue_red(right, 3), 1e-9)
    assert np.allclose(right[0:3], 128, atol=0.5)  # the checker leaves the mean at gray


def test_tight_crops_of_a_clean_checker_are_read_and_chance_has_a_bound():
    task = dict(canvas_size=1568, target_sizes=(224,), grid=4, checker_square=1, pattern_amplitude=32, clutter=5, question_types=["colour"])
    data = sweep(task, SweepSettings(ratios=(1.1,), train_samples=40, test_samples=30, view_budgets={}), progress=False)
    result = data["results"][0]
    assert result["accuracy"]["1.1"] >= 0.9 and result["largest_ratio_read_at_0.9"] == 1.1
    assert at_chance_bound(0.25, 300) == pytest.approx(0.25 + 1.96 * (0.25 * 0.75 / 300) ** 0.5)
    assert "| colour |" in markdown_table(data)


@settings(max_examples=150, deadline=None)
@given(x=st.integers(0, 1900), y=st.integers(0, 1900), side=st.sampled_from([256, 288]), ratio=st.floats(1.0, 8.0), u=st.floats(0, 1), v=st.floats(0, 1))
def test_a_crop_reply_is_valid_and_holds_the_target(x, y, side, ratio, u, v):
    from emergence.leak_sweep import crop_reply
    from mgpo_env.box_parser import parse_box
    from mgpo_env.geometry import BoxPolicy, contains, original_to_view, validate_box

    canvas, view = (2240, 2240), (224, 224)
    target = (min(x, 2240 - side), min(y, 2240 - side), min(x, 2240 - side) + side, min(y, 2240 - side) + side)
    box = parse_box(crop_reply(target, ratio, (u, v), canvas, view)).coords
    assert validate_box(box, view, BoxPolicy())[0] is not None
    assert contains(box, original_to_view(target, view, canvas))
    wanted = max(ratio * side / 10, 29.5)
    assert abs((box[2] - box[0]) - min(wanted, 224)) <= 2


def test_the_vlm_sweep_forces_each_ratio_and_reports_per_question_type():
    """With a stand-in reader that is right exactly when the forced crop is tight, the curve is 1 then 0."""
    from emergence.freeform_task import FREEFORM_TASK, image_budget
    from emergence.leak_sweep import vlm_sweep
    from mgpo_env.box_parser import parse_box
    from mgpo_env.geometry import view_to_original

    view = image_budget().view_size((FREEFORM_TASK["canvas_size"],) * 2)  # the task's view: 308 pixels at 128 tokens

    def evaluate(model, processor, task, indices, forced_first):
        right = {}
        for i in indices:
            box = view_to_original(parse_box(forced_first(i)).coords, view, task.canvas_size)
            target = task[i].target_boxes[0]
            ratio = (box[2] - box[0]) / (target[2] - target[0])
            right.setdefault(task[i].category, []).append(ratio <= 1.6)
        return {"accuracy_per_category": {k: sum(v) / len(v) for k, v in right.items()}}

    curves = vlm_sweep(None, None, FREEFORM_TASK, evaluate, ratios=(1.2, 4.0), questions=12)
    assert set(curves) == {"colour", "checker_half"}
    for curve in curves.values():
        assert curve == {"1.2": 1.0, "4": 0.0}


def test_the_vlm_sweep_reads_the_views_and_joins_the_table_and_figure(tmp_path):
    """Single-turn view columns come from view_evaluate at each baseline budget; the table and figure carry the VLM rows."""
    from emergence.freeform_task import EQUAL_TOKEN_VIEW_TOKENS, FREEFORM_TASK, IMAGE_TOKENS
    from emergence.leak_sweep import markdown_table, plot_sweep, vlm_sweep

    budgets = []

    def crops(model, processor, task, indices, forced_first):
        return {"accuracy_per_category": {"colour": 0.75, "checker_half": 0.5}}

    def views(model, processor, task, indices, budget):
        budgets.append(budget.max_pixels)
        return {"accuracy_per_category": {"colour": 0.25, "checker_half": 0.3}}

    curves = vlm_sweep(None, None, FREEFORM_TASK, crops, ratios=(1.1, 4.0), questions=4, view_evaluate=views)
    assert budgets == [IMAGE_TOKENS * 784, EQUAL_TOKEN_VIEW_TOKENS * 784]
    assert curves["colour"] == {"1.1": 0.75, "4": 0.75, f"view, {IMAGE_TOKENS} tokens": 0.25, f"view, {EQUAL_TOKEN_VIEW_TOKENS} tokens": 0.25}
    accuracy = {"1.1": 1.0, "4": 0.3, f"view, {IMAGE_TOKENS} tokens": 0.3, f"view, {EQUAL_TOKEN_VIEW_TOKENS} tokens": 0.28}
    data = {"results": [{"question_type": "colour", "chance": 0.29, "chance_bound": 0.34, "accuracy": accuracy, "loose_at_chance": True,
                         "views_at_chance": True, "largest_ratio_read_at_0.9": 1.1}], "vlm": curves}
    rows = markdown_table(data).splitlines()
    assert rows[-2] == "| tiny VLM: colour | - | 0.75 | 0.75 | 0.25 | 0.25 | | |"
    assert rows[-1].startswith("| tiny VLM: checker_half | - | 0.50 | 0.50 | 0.30 | 0.30 |")
    assert plot_sweep(data, tmp_path / "sweep.png").stat().st_size > 10_000


def test_the_committed_sweep_is_of_the_task_and_sets_the_hit_cap():
    """benchmarks/results/emergence_leak_sweep.json was swept on FREEFORM_TASK, is clean, and HIT_CAP is its narrowest window."""
    import json
    from pathlib import Path

    from emergence.freeform_task import EQUAL_TOKEN_VIEW_TOKENS, FREEFORM_TASK, HIT_CAP, IMAGE_TOKENS

    data = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "emergence_leak_sweep.json").read_text())
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in FREEFORM_TASK.items()} == data["task"]
    assert set(data["results"][0]["accuracy"]) >= {f"view, {IMAGE_TOKENS} tokens", f"view, {EQUAL_TOKEN_VIEW_TOKENS} tokens"}
    assert all(r["loose_at_chance"] and r["views_at_chance"] for r in data["results"])
    assert HIT_CAP == min(r["largest_ratio_read_at_0.9"] for r in data["results"])
