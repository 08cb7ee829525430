"""Each distinct image through the vision tower once: which images are shared, and that
log-probs, gradients and generations are those of encoding every copy."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.mgpo_loss import pack, token_logprobs  # noqa: E402
from mgpo_agents.shared_images import distinct_images, encode_each_image_once, vision_tower  # noqa: E402

from test_trainer import box_reply, make_engine, tiny, tiny_dir  # noqa: E402,F401  (fixtures)


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


def _group_batch(model, processor, group_size=4):
    engine = make_engine(model, processor, box_reply)
    trajectories = engine.run([0, 2], group_size=group_size, greedy=True).trajectories
    return engine, pack(trajectories, processor.tokenizer.pad_token_id, engine.tokens.image_token_id)


def _tower_rows(model):
    """Record how many patch rows the vision tower is handed per call."""
    rows: list[int] = []
    vision_tower(model).register_forward_pre_hook(lambda module, args, kwargs: rows.append(int((args[0] if args else kwargs["hidden_states"]).shape[0])), with_kwargs=True)
    return rows


def test_training_pass_gives_the_same_logprobs_and_gradients_with_a_fraction_of_the_tower_work(tiny):
    model, processor = tiny
    _, batch = _group_batch(model, processor)
    grid = batch.inputs["image_grid_thw"]
    first = distinct_images(batch.inputs["pixel_values"], grid)
    # 2 questions x 4 episodes: 8 originals (2 distinct) and 8 crops of different sizes (all distinct).
    assert len(first) == 16 and len(set(first)) == 2 + 8

    plain, shared = copy.deepcopy(model), copy.deepcopy(model)
    assert encode_each_image_once(shared) and encode_each_image_once(shared)  # a second install is a no-op
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
    # The tower's own output: every image's merged features, as encoding each copy gives them.
    with torch.no_grad():
        pixels = batch.inputs["pixel_values"]
        full = vision_tower(plain)(pixels, grid_thw=grid)
        hooked = vision_tower(shared)(pixels, grid_thw=grid)
    assert list(hooked.keys()) == ["pooler_output"]  # no patch-level states of the distinct images only
    assert torch.allclose(hooked.pooler_output, full.pooler_output, atol=1e-5)
    rows.pop()
    # The tower saw the distinct images only: their patch rows, not all sixteen images'.
    counts = grid.prod(-1).tolist()
    assert rows == [sum(counts[i] for i in sorted(set(first)))] and rows[0] < sum(counts)


def test_generation_with_shared_images_writes_the_same_replies(tiny):
    model, processor = tiny
    shared = copy.deepcopy(model)
    encode_each_image_once(shared)
    rows = _tower_rows(shared)
    # Free greedy decoding (no forced replies): the replies depend on the image features.
    engines = [make_engine(m, processor, box_reply) for m in (model, shared)]
    for engine in engines:
        engine.extra_logits_processors = None
    plain, hooked = (engine.run([1], group_size=4, greedy=True).trajectories for engine in engines)
    assert [t.input_ids for t in plain] == [t.input_ids for t in hooked]
    for a, b in zip(plain, hooked):
        assert a.generation_logprobs == pytest.approx(b.generation_logprobs, abs=1e-5)
    # Turn 1's batch holds four copies of the original: the tower encodes it once.
    patches = plain[0].pixel_values[0].shape[0]
    assert rows[0] == patches


def test_models_without_a_vision_tower_are_left_alone():
    assert encode_each_image_once(torch.nn.Linear(2, 2)) is False
