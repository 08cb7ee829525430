"""The pixel budget matches Qwen2-VL's processor rule."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mgpo_env.image_budget import ImageBudget, fit_size, resize_image


@settings(max_examples=300, deadline=None)
@given(st.integers(28, 9000), st.integers(28, 9000))
def test_fit_size_equals_the_transformers_rule(width, height):
    qwen = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    if max(width, height) / min(width, height) > 200:
        return
    h, w = qwen.smart_resize(height, width, factor=28, min_pixels=256 * 28 * 28, max_pixels=1280 * 28 * 28)
    assert fit_size(width, height) == (w, h)


@given(st.integers(28, 9000), st.integers(28, 9000))
def test_fitted_sizes_obey_the_budget(width, height):
    if max(width, height) / min(width, height) > 200:
        with pytest.raises(ValueError, match="aspect"):
            fit_size(width, height)
        return
    w, h = fit_size(width, height)
    assert w % 28 == 0 and h % 28 == 0
    assert 256 * 28 * 28 <= w * h <= 1280 * 28 * 28
    assert fit_size(w, h) == (w, h)  # idempotent: the processor will not resize again


def test_published_examples():
    budget = ImageBudget()
    assert budget.view_size((4000, 3000)) == (1148, 840)
    assert budget.view_size((3920, 3920)) == (980, 980)
    assert budget.view_size((100, 100)) == (448, 448)  # a small crop is enlarged
    assert ImageBudget(max_pixels=640 * 28 * 28).view_size((4000, 3000)) == (812, 588)


def test_shrinking_is_area_averaging():
    image = Image.new("RGB", (8, 8))
    image.putpixel((0, 0), (255, 255, 255))
    small = resize_image(image, (4, 4))
    assert small.getpixel((0, 0)) == (64, 64, 64)  # (255 + 0 + 0 + 0) / 4


def test_bad_budgets():
    with pytest.raises(ValueError):
        ImageBudget(min_pixels=100, max_pixels=50_000)
    with pytest.raises(ValueError):
        ImageBudget(max_pixels=1000, min_pixels=4000)
    with pytest.raises(ValueError):
        fit_size(0, 10)
