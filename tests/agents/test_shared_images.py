"""Each distinct image through the vision tower once: which images are shared, and that
log-probs, gradients and generations are those of encoding every copy."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents import shared_images  # noqa: E402
from mgpo_agents.mgpo_loss import pack, token_logprobs  # noqa: E402
from mgpo_agents.qwen_processor import load_model, load_processor  # noqa: E402
from mgpo_agents.rollout import RolloutEngine  # noqa: E402
from mgpo_agents.shared_images import distinct_images, encode_each_image_once, encodes_each_image_once, vision_tower  # noqa: E402

from .forced_rollouts import box_reply, env_maker, forcing  # noqa: E402



@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([(1, 2, 2), (1, 2, 4), (1, 4, 2)])), min_size=1, max_size=9))
def test_distinct_images_points_each_image_at_its_first_equal(images):
    # Image content: a value per "colour" id, so equal (id, grid) pairs are equal images.
    chunks = [torch.full((t * h * w, 3), float(colour)) for colour, (t, h, w) in images]
    grid = torch.tensor([g for _, g in images])
    first = distinct_images(torch.cat(chunks), grid)
    expected = [next(j for j in range(i + 1) if images[j] == images[i]) for i in range(len(images))]
    assert first == expected


def test_one_differing_pixel_makes_images_distinct():
    a = torch.zeros(16, 3)
    b = a.clone()
    b[7, 1] = 1e-6
    assert distinct_images(torch.cat([a, b, a]), torch.tensor([[1, 4, 4]] * 3)) == [0, 1, 0]


@pytest.fixture
def plain_and_shared(tiny_dir, tiny_training_config):
    """Two copies of the tiny model: one without the hooks (every copy encoded), one with them; their processor
    and environments on the trainer tests' task."""
    plain, shared = load_model(tiny_dir), load_model(tiny_dir)
    assert encode_each_image_once(shared) and encode_each_image_once(shared)  # a second install is a no-op
    assert not encodes_each_image_once(plain) and encodes_each_image_once(shared)
    assert len(vision_tower(shared)._forward_pre_hooks) == 1
    return plain, shared, load_processor(tiny_dir), env_maker(tiny_training_config())


def _engine(model, processor, make, reply_for=box_reply, *, share=False):
    extra = forcing(processor, reply_for) if reply_for is not None else None
    return RolloutEngine(model, processor, make, max_new_tokens=40, extra_logits_processors=extra, encode_images_once=share)


def _tower_rows(model):
    """Record how many patch rows the vision tower is handed per call (after the sharing hook)."""
    rows: list[int] = []
    vision_tower(model).register_forward_pre_hook(lambda module, args, kwargs: rows.append(int((args[0] if args else kwargs["hidden_states"]).shape[0])), with_kwargs=True)
    return rows


def test_training_pass_gives_the_same_logprobs_and_gradients_with_a_fraction_of_the_tower_work(plain_and_shared):
    plain, shared, processor, make = plain_and_shared
    engine = _engine(plain, processor, make)
    trajectories = engine.run([0, 2], group_size=4, greedy=True).trajectories
    assert not encodes_each_image_once(plain)  # the engine left it as it was
    batch = pack(trajectories, processor.tokenizer.pad_token_id, engine.tokens.image_token_id)
    grid = batch.inputs["image_grid_thw"]
    first = distinct_images(batch.inputs["pixel_values"], grid)
    # 2 questions x 4 episodes: 8 originals (2 distinct) and 8 crops of different sizes (all distinct).
    assert len(first) == 16 and len(set(first)) == 2 + 8

    rows = _tower_rows(shared)
    results = []
    for m in (plain, shared):
        m.zero_grad()
        logp, _ = token_logprobs(m, batch)
        logp.sum().backward()
        results.append((logp.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    (logp_plain, grads_plain), (logp_shared, grads_shared) = results
    assert torch.allclose(logp_plain, logp_shared, atol=1e-5), (logp_plain - logp_shared).abs().max()
    assert grads_plain.keys() == grads_shared.keys() and any("visual" in n for n in grads_plain)
    for name, grad in grads_plain.items():
        assert torch.allclose(grad, grads_shared[name], atol=1e-5, rtol=1e-4), name
    # The tower saw the distinct images only: their patch rows, not all sixteen images'.
    counts = grid.prod(-1).tolist()
    assert rows == [sum(counts[i] for i in sorted(set(first)))] and rows[0] < sum(counts)
    # The tower's own output: every image's merged features, as encoding each copy gives them.
    with torch.no_grad():
        pixels = batch.inputs["pixel_values"]
        full = vision_tower(plain)(pixels, grid_thw=grid)
        hooked = vision_tower(shared)(pixels, grid_thw=grid)
    assert list(hooked.keys()) == ["pooler_output"]  # no patch-level states of the distinct images only
    assert torch.allclose(hooked.pooler_output, full.pooler_output, atol=1e-5)


def test_a_wrong_expansion_would_be_caught(plain_and_shared, monkeypatch):
    """The comparison above can fail: give each copy the wrong distinct image and it does."""
    plain, shared, processor, make = plain_and_shared
    engine = _engine(plain, processor, make)
    batch = pack(engine.run([0, 2], group_size=2, greedy=True).trajectories, processor.tokenizer.pad_token_id, engine.tokens.image_token_id)
    real = shared_images._first_equal

    def swapped(grids, chunks):  # every copy takes the features of the other question's image
        first = real(grids, chunks)
        shared = sorted({f for i, f in enumerate(first) if f != i})
        assert len(shared) == 2 and grids[shared[0]] == grids[shared[1]]
        return [f if f == i else next(o for o in shared if o != f) for i, f in enumerate(first)]

    monkeypatch.setattr(shared_images, "_first_equal", swapped)
    with torch.no_grad():
        grid = batch.inputs["image_grid_thw"]
        full = vision_tower(plain)(batch.inputs["pixel_values"], grid_thw=grid).pooler_output
        wrong = vision_tower(shared)(batch.inputs["pixel_values"], grid_thw=grid).pooler_output
    assert not torch.allclose(wrong, full, atol=1e-3)


def test_generation_with_shared_images_writes_the_same_replies(plain_and_shared):
    plain, shared, processor, make = plain_and_shared
    rows = _tower_rows(shared)
    # Free greedy decoding (no forced replies): the replies depend on the image features.
    runs = [_engine(m, processor, make, None, share=m is shared).run([1], group_size=4, greedy=True).trajectories for m in (plain, shared)]
    assert not encodes_each_image_once(plain) and encodes_each_image_once(shared)
    without, with_sharing = runs
    assert [t.input_ids for t in without] == [t.input_ids for t in with_sharing]
    for a, b in zip(without, with_sharing):
        assert a.generation_logprobs == pytest.approx(b.generation_logprobs, abs=1e-5)
    # Turn 1's batch holds four copies of the original: the tower encodes it once.
    assert rows[0] == without[0].pixel_values[0].shape[0]


def test_hooks_come_off_and_travel_with_a_deepcopy(plain_and_shared):
    _, shared, _, _ = plain_and_shared
    copied = copy.deepcopy(shared)  # the trainer's frozen reference is made this way
    assert encodes_each_image_once(copied)
    assert encode_each_image_once(copied, False) and not encodes_each_image_once(copied)
    tower = vision_tower(copied)
    assert not tower._forward_pre_hooks and not tower._forward_hooks and not tower._forward_hooks_with_kwargs
    assert encodes_each_image_once(shared)  # the original keeps its own


def test_models_without_a_vision_tower_are_left_alone():
    assert encode_each_image_once(torch.nn.Linear(2, 2)) is False
