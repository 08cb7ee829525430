"""Coordinate frames and the crop: every frame names the same original region."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mgpo_env.geometry import (
    BoxPolicy,
    contains,
    from_view_pixels,
    iou,
    original_to_view,
    side_ratio,
    tight_hit,
    to_pixel_box,
    to_view_pixels,
    validate_box,
    view_to_original,
)

sizes = st.tuples(st.integers(28, 4000), st.integers(28, 4000))


@st.composite
def view_and_box(draw):
    """A view size and a box inside it, in view pixels."""
    w, h = draw(sizes)
    x1 = draw(st.floats(0, w - 1, allow_nan=False))
    y1 = draw(st.floats(0, h - 1, allow_nan=False))
    x2 = draw(st.floats(x1 + 0.5, w, allow_nan=False).filter(lambda v: v > x1))
    y2 = draw(st.floats(y1 + 0.5, h, allow_nan=False).filter(lambda v: v > y1))
    return (w, h), (x1, y1, x2, y2)


@given(view_and_box(), st.sampled_from(["pixel", "norm1000", "relative"]))
def test_every_frame_maps_to_the_same_view_region(case, frame):
    view, box = case
    written = from_view_pixels(box, frame, view)
    back = to_view_pixels(written, frame, view)
    assert back == pytest.approx(box, rel=1e-9, abs=1e-6)


@given(view_and_box(), sizes)
def test_view_to_original_is_the_published_linear_map(case, original):
    view, box = case
    mapped = view_to_original(box, view, original)
    # Independent computation: x_orig = x / view_w * orig_w.
    expected = (box[0] / view[0] * original[0], box[1] / view[1] * original[1], box[2] / view[0] * original[0], box[3] / view[1] * original[1])
    assert mapped == pytest.approx(expected)
    assert original_to_view(mapped, view, original) == pytest.approx(box)


@settings(max_examples=60, deadline=None)
@given(st.integers(40, 300), st.integers(40, 300), st.data())
def test_crop_pixels_equal_the_original_pixels(width, height, data):
    rng = np.random.default_rng(width * 1000 + height)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    x1 = data.draw(st.floats(0, width - 2))
    y1 = data.draw(st.floats(0, height - 2))
    x2 = data.draw(st.floats(x1 + 1, width))
    y2 = data.draw(st.floats(y1 + 1, height))
    box = to_pixel_box((x1, y1, x2, y2), image.size)
    crop = np.asarray(image.crop(box))
    assert np.array_equal(crop, pixels[box[1] : box[3], box[0] : box[2]])
    # Outward rounding: the integer box covers the float box.
    assert box[0] <= x1 + 1e-6 and box[1] <= y1 + 1e-6 and box[2] >= min(x2, width) - 1e-6 and box[3] >= min(y2, height) - 1e-6


def test_reference_validity_rules():
    view = (980, 700)
    assert validate_box((0, 0, 980, 700), view)[0] == (0.0, 0.0, 980.0, 700.0)
    assert validate_box((0, 0, 29, 29), view)[0] is not None
    assert validate_box((0, 0, 28, 100), view)[0] is None  # sides must be *longer* than 28
    assert "outside" in validate_box((-1, 0, 100, 100), view)[1]
    assert "outside" in validate_box((10, 10, 981, 100), view)[1]
    assert validate_box((100, 10, 50, 100), view)[0] is None
    long_thin = validate_box((0, 0, 979, 29.5), (3000, 3000), BoxPolicy(min_side=28, max_aspect=30))
    assert long_thin[0] is None and "aspect" in long_thin[1]
    assert validate_box((0, 0, float("nan"), 10), view)[0] is None


def test_clamp_policy_clips_instead_of_rejecting():
    clamped, error = validate_box((-50, -20, 2000, 300), (980, 700), BoxPolicy(clamp=True))
    assert error is None and clamped == (0.0, 0.0, 980.0, 300.0)
    assert validate_box((-50, -20, 10, 300), (980, 700), BoxPolicy(clamp=True))[0] is None  # too thin after clipping


def test_policy_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="max_aspect"):
        BoxPolicy(max_aspect=0.5)
    with pytest.raises(ValueError, match="min_side"):
        BoxPolicy(min_side=-1)


def test_iou_and_contains():
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert contains((0, 0, 10, 10), (2, 2, 8, 8)) and not contains((0, 0, 10, 10), (2, 2, 11, 8))


@settings(max_examples=200)
@given(
    st.tuples(st.integers(0, 3000), st.integers(0, 3000), st.integers(1, 500), st.integers(1, 500)),
    st.floats(1.0, 10.0, allow_nan=False),
    st.tuples(st.floats(0, 1), st.floats(0, 1)),
    st.floats(1.0, 10.0, allow_nan=False),
)
def test_a_square_crop_of_r_times_the_side_is_a_tight_hit_exactly_when_r_is_under_the_cap(target, ratio, offset, cap):
    x, y, w, h = target
    box = (x, y, x + w, y + h)
    side = max(w, h) * ratio  # a square crop of `ratio` x the target's longest side, holding it
    left, top = x - offset[0] * (side - w), y - offset[1] * (side - h)
    crop = (left, top, left + side, top + side)
    assert side_ratio(crop, box) == pytest.approx(ratio)
    if abs(ratio - cap) > 1e-9:
        assert tight_hit(crop, box, cap) == (ratio < cap)
    moved = (crop[0] + side, crop[1], crop[2] + side, crop[3])  # beside the target: never a hit
    assert not tight_hit(moved, box, 10.0)


def test_side_ratio_uses_the_longest_sides():
    assert side_ratio((0, 0, 30, 60), (0, 0, 40, 20)) == 1.5
    assert side_ratio((0, 0, 5, 5), (3, 3, 3, 3)) == float("inf")
