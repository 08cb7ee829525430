"""Supervised fine-tuning on scripted episodes (:mod:`mgpo_agents.supervised`).

``scripted_trajectory`` must build the very tokens a rollout would (so SFT and RL
train the same token space), ``reply_ids`` must tokenize a reply as generation
would, and ``fit`` must learn, stop when its gate says so and follow its schedule.
"""

import gymnasium as gym
import pytest
import torch

import mgpo_env  # noqa: F401  (registers mgpo/HighResVQA-v0)
from mgpo_agents.qwen_processor import load_model, load_processor
from mgpo_agents.supervised import fit, reply_ids, scripted_trajectory
from mgpo_agents.tiny_model import build_tiny_qwen25vl
from mgpo_agents.trajectory import ConversationTokenizer, template_drift


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "m")
    return path, load_processor(path)


def _env(**kwargs):
    return gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 4, "canvas_size": 896, "target_size": 64}, min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28, **kwargs)


def test_scripted_trajectory_is_token_exact_and_masks_chosen_turns(tiny):
    _, processor = tiny
    tokens = ConversationTokenizer(processor)
    env = _env()
    trajectory = scripted_trajectory(tokens, env, 1, ["[0,0,112,112]", "\\boxed{C}"], train_turns=[1])
    assert [s.generated for s in trajectory.segments] == [False, False, False, True]
    assert trajectory.segments[3].ids == reply_ids(tokens, "\\boxed{C}")
    assert template_drift(trajectory, tokens.full_conversation_ids(env.unwrapped.chat_messages())) == 0
    assert len(trajectory.pixel_values) == 2 and trajectory.info["answer"] == "C"


def test_shown_reply_replaces_the_ids_but_not_the_action(tiny):
    _, processor = tiny
    tokens = ConversationTokenizer(processor)
    env = _env()
    acted = scripted_trajectory(tokens, env, 0, ["[0,0,112,112]", "\\boxed{A}"], train_turns=[1])
    shown = scripted_trajectory(tokens, env, 0, ["[0,0,112,112]", "\\boxed{A}"], train_turns=[1], shown_replies=["[112,112,224,224]", None])
    assert shown.segments[1].ids == reply_ids(tokens, "[112,112,224,224]") != acted.segments[1].ids
    assert torch.equal(shown.pixel_values[1], acted.pixel_values[1])  # the same crop: the env acted on the first box
    assert shown.info["crop_box"] == acted.info["crop_box"] == (0, 0, 448, 448)
    with pytest.raises(ValueError, match="ended"):
        scripted_trajectory(tokens, _env(protocol="single_turn"), 0, ["\\boxed{A}", "more"], train_turns=[0])


def test_fit_memorises_a_small_batch(tiny):
    path, processor = tiny
    torch.manual_seed(0)
    model = load_model(path)
    tokens = ConversationTokenizer(processor)
    env = _env(protocol="single_turn")
    batch = [scripted_trajectory(tokens, env, i, [f"\\boxed{{{'ABCD'[i]}}}"], train_turns=[0]) for i in range(4)]
    losses = fit(model, tokens, lambda step: batch, steps=25, learning_rate=3e-3, pad_id=processor.tokenizer.pad_token_id, progress=False)
    assert losses[-1] < 0.25 * losses[0]


def test_fit_stops_when_the_gate_says_so_and_keeps_a_constant_rate(tiny):
    """A gated stage: on_step returning True ends training after that step; "constant" keeps the rate flat."""
    path, processor = tiny
    model = load_model(path)
    tokens = ConversationTokenizer(processor)
    env = _env(protocol="single_turn")
    batch = [scripted_trajectory(tokens, env, 0, ["\\boxed{A}"], train_turns=[0])]
    seen_rates: list[float] = []
    original_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        seen_rates.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = recording_step
    try:
        losses = fit(model, tokens, lambda step: batch, steps=50, learning_rate=1e-3, pad_id=processor.tokenizer.pad_token_id,
                     warmup_steps=2, schedule="constant", on_step=lambda step, loss: step == 6, progress=False)
    finally:
        torch.optim.AdamW.step = original_step
    assert len(losses) == 7  # steps 0..6, then the gate stopped it
    assert seen_rates == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="schedule"):
        fit(model, tokens, lambda step: batch, steps=1, learning_rate=1e-3, pad_id=0, schedule="linear", progress=False)
