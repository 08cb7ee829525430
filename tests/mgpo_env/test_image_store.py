"""The image speed paths: the view cache, fast JPEG shrinking, draft views, and the byte-bounded cache."""

import threading
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image, ImageDraw

import mgpo_env  # noqa: F401  (registers the environment)
from mgpo_env import Sample
from mgpo_env.image_budget import ImageBudget, resize_image, resize_region, resize_to_budget
from mgpo_datasets.image_files import ImageLoadError, decode_image
from mgpo_env.image_store import ImageStore

SMALL_BUDGET = ImageBudget(min_pixels=64 * 28 * 28, max_pixels=256 * 28 * 28)  # views of ~450x340


def photo_like(size, seed=0):
    """Smooth colours, hard-edged shapes and sensor-like noise: a stand-in for a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = (rng.random((h // 40 + 2, w // 40 + 2, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y, s = int(rng.integers(w)), int(rng.integers(h)), int(rng.integers(5, w // 8))
        draw.rectangle((x, y, x + s, y + s // 2), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-10, 11, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def jpeg_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.jpg"
    photo_like((2000, 1500)).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def png_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "photo.png"
    photo_like((1200, 900), seed=1).save(path)
    return path


def psnr(a, b):
    mse = np.mean((np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def mean_abs(a, b):
    return float(np.abs(np.asarray(a).astype(np.int16) - np.asarray(b).astype(np.int16)).mean())


def exact(image, box, size):
    return resize_image(image.crop(box), size)


# ------------------------------------------------------------- fast shrinking
def test_fast_shrink_is_near_the_exact_path(jpeg_path):
    original = decode_image(jpeg_path)
    assert original.format == "JPEG"
    regions = [(0, 0, 2000, 1500), (100, 50, 1900, 1450), (13, 7, 1500, 800), (400, 300, 1333, 1177)]
    for box in regions:
        size = SMALL_BUDGET.view_size((box[2] - box[0], box[3] - box[1]))
        fast = resize_region(original, box, size)  # JPEG-decoded: the fast path by default
        reference = exact(original, box, size)
        assert fast.size == reference.size == size
        assert not np.array_equal(np.asarray(fast), np.asarray(reference))  # it did take the fast path
        # Documented in benchmarks/results/env_throughput.md: the same to the eye.
        assert psnr(fast, reference) > 36 and mean_abs(fast, reference) < 2.0


def test_fast_path_is_the_exact_path_under_2x_and_when_enlarging(jpeg_path):
    original = decode_image(jpeg_path)
    budget = ImageBudget()
    for box in [(0, 0, 1400, 1000), (10, 10, 200, 150), (300, 200, 1100, 1300), (0, 0, 2000, 1500)]:
        size = budget.view_size((box[2] - box[0], box[3] - box[1]))  # 2000x1500 -> 1148x868: 1.7x
        assert np.array_equal(np.asarray(resize_region(original, box, size)), np.asarray(exact(original, box, size)))


def test_whole_factor_shrink_is_the_exact_block_mean(jpeg_path):
    original = decode_image(jpeg_path)
    box, size = (0, 0, 2000, 1500), (500, 375)  # exactly 4x
    fast = np.asarray(resize_region(original, box, size)).astype(int)
    blocks = np.asarray(original).astype(np.float64).reshape(375, 4, 500, 4, 3).mean(axis=(1, 3))
    assert np.abs(fast - blocks).max() <= 0.5 + 1e-9  # the block mean, rounded
    assert np.abs(fast - np.asarray(exact(original, box, size)).astype(int)).max() <= 1  # BOX rounds twice


def test_other_sources_always_take_the_exact_path(png_path, jpeg_path):
    png = decode_image(png_path)
    in_memory = photo_like((1200, 900), seed=2)
    grey_jpeg = decode_image(_grey_jpeg(jpeg_path))  # converted to RGB: no longer "JPEG"
    for image in (png, in_memory, grey_jpeg):
        for box in [(0, 0, image.width, image.height), (17, 9, 1100, 880)]:
            size = SMALL_BUDGET.view_size((box[2] - box[0], box[3] - box[1]))
            assert np.array_equal(np.asarray(resize_region(image, box, size)), np.asarray(exact(image, box, size)))


def _grey_jpeg(jpeg_path):
    path = jpeg_path.with_name("grey.jpg")
    Image.open(jpeg_path).convert("L").save(path, quality=90)
    return path


def test_resize_region_refuses_regions_outside_the_image():
    image = Image.new("RGB", (100, 100))
    for box in [(0, 0, 101, 50), (-1, 0, 50, 50), (10, 10, 10, 20)]:
        with pytest.raises(ValueError):
            resize_region(image, box, (28, 28))


# ------------------------------------------------------------------ the view
def test_view_cache_is_keyed_by_budget(jpeg_path):
    store = ImageStore()
    other = ImageBudget(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    small, size = store.view("s", jpeg_path, SMALL_BUDGET)
    tiny, _ = store.view("s", jpeg_path, other)
    assert size == (2000, 1500) and small.size == SMALL_BUDGET.view_size(size) and tiny.size == other.view_size(size)
    assert small.size != tiny.size and store.views_made == 2 and store.decodes == 1
    again, _ = store.view("s", jpeg_path, SMALL_BUDGET)
    assert again is small and store.views_made == 2
    # An equal budget is the same key; a caller's own tuple key never collides with a view.
    assert store.view("s", jpeg_path, ImageBudget(min_pixels=64 * 28 * 28, max_pixels=256 * 28 * 28))[0] is small
    store.put(("s", SMALL_BUDGET), Image.new("RGB", (1, 1)))
    assert store.view("s", jpeg_path, SMALL_BUDGET)[0] is small
    # A different sample with the same budget is a different view.
    store.view("t", jpeg_path, SMALL_BUDGET)
    assert store.views_made == 3


def test_draft_view_only_when_no_crop_follows(jpeg_path, png_path):
    store = ImageStore()
    draft, size = store.view("s", jpeg_path, SMALL_BUDGET, need_original=False)
    assert (store.draft_decodes, store.decodes) == (1, 0) and size == (2000, 1500)
    exact_view = exact(decode_image(jpeg_path), (0, 0, 2000, 1500), SMALL_BUDGET.view_size(size))
    assert draft.size == exact_view.size
    assert psnr(draft, exact_view) > 36 and mean_abs(draft, exact_view) < 2.0  # documented: the same to the eye
    # A caller that crops never gets the draft view: it decodes the original and makes its own.
    full, _ = store.view("s", jpeg_path, SMALL_BUDGET)
    assert full is not draft and store.decodes == 1
    assert np.array_equal(np.asarray(full), np.asarray(resize_region(decode_image(jpeg_path), (0, 0, 2000, 1500), full.size)))
    # Once the full view exists, a single-turn caller gets it too.
    assert store.view("s", jpeg_path, SMALL_BUDGET, need_original=False)[0] is full
    # Never for other formats.
    png_store = ImageStore()
    png_view, _ = png_store.view("p", png_path, SMALL_BUDGET, need_original=False)
    assert (png_store.draft_decodes, png_store.decodes) == (0, 1)
    assert np.array_equal(np.asarray(png_view), np.asarray(resize_to_budget(decode_image(png_path), SMALL_BUDGET)))
    # draft_views=False turns it off.
    plain = ImageStore(draft_views=False)
    plain.view("s", jpeg_path, SMALL_BUDGET, need_original=False)
    assert (plain.draft_decodes, plain.decodes) == (0, 1)


def test_a_group_of_8_resets_decodes_once(jpeg_path):
    sample = Sample(sample_id="photo", image=str(jpeg_path), question="What is it?", answer="A", choices=("x", "y"))
    env = gym.make("mgpo/HighResVQA-v0", dataset=[sample], max_pixels=SMALL_BUDGET.max_pixels, min_pixels=SMALL_BUDGET.min_pixels)
    store = env.unwrapped.images
    views = []
    for k in range(8):
        _, info = env.reset(options={"index": 0})
        views.append(env.unwrapped.chat_images()[0])
        vw, vh = info["model_image_size"]
        _, _, _, _, info = env.step(f'```json\n[{{"bbox_2d": [{10 * k}, 20, {vw - 5 * k}, {vh - 30}]}}]\n```')
        assert info["box_valid"]
        original = store.get("photo", None)
        crop_view = env.unwrapped.chat_images()[1]
        assert np.array_equal(np.asarray(crop_view), np.asarray(resize_region(original, info["crop_box"], crop_view.size)))
        env.step("\\boxed{A}")
    assert store.decodes == 1 and store.views_made == 1 and store.draft_decodes == 0
    assert all(view is views[0] for view in views)
    assert np.array_equal(np.asarray(views[0]), np.asarray(resize_region(original, (0, 0, 2000, 1500), views[0].size)))


def test_concurrent_misses_decode_and_shrink_once(jpeg_path):
    """8 threads (a server's sessions of one group) asking at once for a new image share one decode and one view."""
    store = ImageStore()
    barrier = threading.Barrier(8)

    def reset_like(_):
        barrier.wait(timeout=30)
        return store.view("photo", str(jpeg_path), SMALL_BUDGET)[0], store.get("photo", str(jpeg_path))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(reset_like, range(8), timeout=60))
    assert (store.decodes, store.views_made) == (1, 1)
    assert all(view is results[0][0] and original is results[0][1] for view, original in results)


def test_a_single_turn_group_never_decodes_the_full_jpeg(jpeg_path):
    sample = Sample(sample_id="photo", image=str(jpeg_path), question="What is it?", answer="A", choices=("x", "y"))
    budget = {"max_pixels": SMALL_BUDGET.max_pixels, "min_pixels": SMALL_BUDGET.min_pixels}  # the view is < 1/2 the original
    env = gym.make("mgpo/HighResVQA-v0", dataset=[sample], protocol="single_turn", **budget)
    for _ in range(8):
        _, info = env.reset(options={"index": 0})
        assert info["original_image_size"] == (2000, 1500)
        env.step("\\boxed{A}")
    store = env.unwrapped.images
    assert (store.decodes, store.draft_decodes, store.views_made) == (0, 1, 1)
    assert store.cached_bytes < 2000 * 1500 * 3 / 4  # only the view is kept
    # With the default budget the view is over half the original: no codec scaling helps, so it decodes fully.
    env = gym.make("mgpo/HighResVQA-v0", dataset=[sample], protocol="single_turn")
    env.reset(options={"index": 0})
    assert (env.unwrapped.images.decodes, env.unwrapped.images.draft_decodes) == (1, 0)


def test_synthetic_views_stay_exact_area_averages():
    # Not a JPEG: the env's view is bit for bit the BOX average the synthetic task is built on.
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2})
    env.reset(options={"index": 0})
    base = env.unwrapped
    original = base.images.get(base.sample.sample_id, base.sample.image)
    view = base.chat_images()[0]
    assert original.format is None and view.size == (980, 980)
    assert np.array_equal(np.asarray(view), np.asarray(resize_to_budget(original, base.budget)))


# ------------------------------------------------------------------ eviction
def test_cache_eviction_respects_max_bytes():
    one = 300 * 200 * 3
    store = ImageStore(max_bytes=int(2.5 * one))
    for key in "abc":
        store.get(key, lambda: Image.new("RGB", (300, 200)))
        assert store.cached_bytes <= store.max_bytes
    assert len(store) == 2 and store.cached_bytes == 2 * one and store.decodes == 3
    store.get("b", None)  # a hit makes "b" the most recent ...
    store.get("d", lambda: Image.new("RGB", (300, 200)))  # ... so "c" goes
    assert store.get("b", None) is not None
    with pytest.raises(ImageLoadError):
        store.get("c", None)  # evicted: it must be decoded again, and None is no image
    # Views count too, and an image larger than the whole cache is used once and not kept.
    store.view("b", None, ImageBudget(min_pixels=28 * 28, max_pixels=112 * 112))
    assert store.cached_bytes <= store.max_bytes
    before = (len(store), store.cached_bytes)
    store.put("huge", Image.new("RGB", (1000, 1000)))
    assert (len(store), store.cached_bytes) == before
    store.clear()
    assert store.cached_bytes == 0 and len(store) == 0


def test_a_group_bigger_than_the_cache_still_works(jpeg_path):
    # The cache holds less than one original: every crop decodes again, the results stay right.
    sample = Sample(sample_id="photo", image=str(jpeg_path), question="What is it?", answer="A", choices=("x", "y"))
    env = gym.make("mgpo/HighResVQA-v0", dataset=[sample], image_cache_bytes=1_000_000)
    store = env.unwrapped.images
    for _ in range(2):
        env.reset(options={"index": 0})
        _, _, _, _, info = env.step('```json\n[{"bbox_2d": [10, 10, 300, 300]}]\n```')
        assert info["box_valid"] and store.cached_bytes <= 1_000_000
    assert store.decodes >= 2
