"""Overlong episodes: past the configured length or the model's context, an episode ends truncated (reward 0), never cut."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.qwen_processor import load_model, load_processor  # noqa: E402
from mgpo_agents.rollout import RolloutEngine, context_length  # noqa: E402

from .forced_rollouts import box_reply, env_maker, forcing  # noqa: E402

NEW_TOKENS = 40


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    torch.manual_seed(0)
    return load_model(tiny_dir), load_processor(tiny_dir)


def _engine(tiny, config, **kwargs):
    model, processor = tiny
    return RolloutEngine(model, processor, env_maker(config), max_new_tokens=NEW_TOKENS, extra_logits_processors=forcing(processor, box_reply), **kwargs)


@pytest.fixture
def unlimited(tiny, tiny_training_config):
    """The same episodes with no limit: the reference lengths (prompt, and after the first reply and crop)."""
    trajectories = _engine(tiny, tiny_training_config()).run([0], group_size=2, greedy=True).trajectories
    assert all(len(t.reply_lengths()) == 2 and t.reward in (0.0, 1.0) for t in trajectories)
    return trajectories


def _after_first_turn(trajectory) -> int:
    """Tokens of the prompt, the first reply and the environment's crop message."""
    return sum(len(s.ids) for s in trajectory.segments[:3])


def test_an_episode_without_room_for_its_next_reply_ends_truncated_with_reward_zero(tiny, tiny_training_config, unlimited):
    limit = min(_after_first_turn(t) for t in unlimited) + NEW_TOKENS - 1  # room for the first reply, not the second
    trajectories = _engine(tiny, tiny_training_config(), max_episode_tokens=limit).run([0], group_size=2, greedy=True).trajectories
    for short, full in zip(trajectories, unlimited):
        assert short.reward == 0.0 and len(short.reply_lengths()) == 1
        assert short.info["overlong"] is True and short.info["truncated"] is True
        assert short.info["episode_tokens"] == _after_first_turn(full) and short.info["max_episode_tokens"] == limit
        assert short.input_ids == full.input_ids[: _after_first_turn(full)]  # nothing cut: the same ids up to where it stopped
        assert len(short.input_ids) + NEW_TOKENS > limit


def test_a_prompt_longer_than_the_limit_is_never_cut(tiny, tiny_training_config, unlimited):
    prompt = len(unlimited[0].segments[0].ids)
    trajectories = _engine(tiny, tiny_training_config(), max_episode_tokens=prompt + NEW_TOKENS - 1).run([0], group_size=2, greedy=True).trajectories
    for t in trajectories:
        assert t.reward == 0.0 and t.info["overlong"] and t.reply_lengths() == [] and not any(t.loss_mask)
        assert t.input_ids == unlimited[0].segments[0].ids  # the whole prompt, as the unlimited run had it


def test_the_models_context_is_the_default_limit(tiny, tiny_training_config, unlimited):
    model, _ = tiny
    text_config = model.config.text_config
    saved = text_config.max_position_embeddings
    try:
        text_config.max_position_embeddings = len(unlimited[0].segments[0].ids) + NEW_TOKENS - 1
        assert context_length(model) == text_config.max_position_embeddings
        engine = _engine(tiny, tiny_training_config())
        assert engine.max_episode_tokens == text_config.max_position_embeddings
        trajectories = engine.run([0], group_size=2, greedy=True).trajectories
        assert all(t.info["overlong"] and t.reward == 0.0 for t in trajectories)
    finally:
        text_config.max_position_embeddings = saved


def test_a_step_of_overlong_episodes_trains_nothing_and_says_so_in_its_metrics(tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    trainer = MGPOTrainer(tiny_training_config(steps=1, max_episode_tokens=NEW_TOKENS))  # no prompt fits
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    metrics = trainer.train(progress=False)[0]
    assert metrics["overlong_episodes"] == trainer.config.group_size and metrics["reward_mean"] == 0.0
    assert metrics["updates"] == 0 and metrics["skipped_updates"] == 0
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p, before[name])
