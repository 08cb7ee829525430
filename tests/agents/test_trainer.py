"""The MGPO trainer: advantages and loss by hand, the loss mask, token-exact log-probs,
learning in the direction of the advantage, resume, two processes, config validation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import mgpo_env  # noqa: E402,F401
from mgpo_agents.config import MGPOConfig, config_from_args, add_config_arguments, preset  # noqa: E402
from mgpo_agents.mgpo_loss import group_advantages, mgpo_token_loss, pack, token_logprobs  # noqa: E402
from mgpo_agents.qwen_processor import load_model, load_processor  # noqa: E402
from mgpo_agents.rollout import RolloutEngine  # noqa: E402
from transformers import LogitsProcessor  # noqa: E402

from .forced_rollouts import box_reply, env_maker, forcing  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    torch.manual_seed(0)
    return load_model(tiny_dir), load_processor(tiny_dir)


def make_engine(model, processor, reply_for, config, protocol="two_turn"):
    make = env_maker(config, protocol=protocol)
    return RolloutEngine(model, processor, make, max_new_tokens=40, extra_logits_processors=forcing(processor, reply_for))


# ---------------------------------------------------------------- by hand
def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    advantages, flat = group_advantages(rewards, groups, eps=1e-6)
    std = math.sqrt(sum((r - 0.5) ** 2 for r in (1, 0, 0, 1)) / 3)  # Bessel-corrected
    expected = [(r - 0.5) / (std + 1e-6) for r in (1, 0, 0, 1)] + [0.0, 0.0]
    assert advantages.tolist() == pytest.approx(expected, abs=1e-6)
    assert flat == 1


def test_mgpo_token_loss_by_hand():
    logp = torch.tensor([-1.0, -2.0, -0.5, -3.0])
    old = torch.tensor([-1.0, -2.0 - math.log(1.5), -0.5 + math.log(2.0), -3.0])  # ratios 1, 1.5, 0.5, 1
    ref = torch.tensor([-1.2, -2.0, -0.4, -2.5])
    entropy = torch.tensor([2.0, 1.0, 0.5, 3.0])
    adv = torch.tensor([1.0, 1.0, -1.0, -2.0])
    terms = mgpo_token_loss(logp, old, ref, entropy, adv, clip_ratio=0.2, kl_coef=0.1, entropy_coef=0.01, normaliser=4.0)
    expected = 0.0
    for lp, o, r, h, a in zip(logp.tolist(), old.tolist(), ref.tolist(), entropy.tolist(), adv.tolist()):
        ratio = math.exp(lp - o)
        pg = max(-a * ratio, -a * min(max(ratio, 0.8), 1.2))
        kl = math.exp(r - lp) - (r - lp) - 1
        expected += pg + 0.1 * kl - 0.01 * h
    assert terms.loss.item() == pytest.approx(expected / 4.0, rel=1e-6)
    assert terms.clipped.item() == 2  # ratios 1.5 and 0.5 are outside [0.8, 1.2]
    assert terms.tokens == 4


# ---------------------------------------------------- token-exact trajectories
def test_training_logprobs_equal_generation_logprobs_across_turns(tiny, tiny_training_config):
    model, processor = tiny
    engine = make_engine(model, processor, box_reply, tiny_training_config())
    result = engine.run([0, 3], group_size=3, greedy=True, check_drift=True)
    trajectories = result.trajectories
    assert all(t.info["box_valid"] for t in trajectories)
    crop_patches = {t.pixel_values[1].shape[0] for t in trajectories}
    assert len(crop_patches) >= 2, "rows must have crops of different sizes"
    assert all(len(t.reply_lengths()) == 2 for t in trajectories)
    batch = pack(trajectories, processor.tokenizer.pad_token_id, engine.tokens.image_token_id)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch)
    generation = torch.tensor([lp for t in trajectories for lp in t.generation_logprobs])
    assert logp.shape == generation.shape
    assert torch.allclose(logp, generation, atol=2e-5), (logp - generation).abs().max()
    # The ids equal the chat template's rendering of the same conversation: no drift.
    assert result.drift == [0] * len(trajectories)


def test_loss_mask_gives_environment_and_prompt_tokens_zero_gradient(tiny, tiny_training_config):
    model, processor = tiny
    engine = make_engine(model, processor, box_reply, tiny_training_config())
    trajectories = engine.run([1], group_size=2, greedy=True).trajectories
    batch = pack(trajectories, processor.tokenizer.pad_token_id, engine.tokens.image_token_id)
    mask = torch.tensor([t.loss_mask + [0] * (batch.predicts_generated.shape[1] - len(t.loss_mask)) for t in trajectories])
    # Exactly the generated ids (both replies, each with its end-of-turn token) are targets.
    assert batch.predicts_generated[:, :-1].eq(mask[:, 1:].bool()).all()
    assert int(mask.sum()) == sum(sum(t.reply_lengths()) for t in trajectories)
    eos = processor.tokenizer.convert_tokens_to_ids(processor.tokenizer.eos_token)
    for t in trajectories:
        generated = [s for s in t.segments if s.generated]
        assert all(s.ids[-1] == eos for s in generated)
        env = [s for s in t.segments if not s.generated]
        assert len(env) == 2 and processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") in env[1].ids
    # Full logits with a gradient: rows at prompt/environment positions receive exactly zero.
    output = model(**batch.inputs, use_cache=False)
    logits = output.logits
    logits.retain_grad()
    selected = torch.log_softmax(logits[batch.predicts_generated].float(), -1).gather(1, batch.targets[:, None]).squeeze(1)
    advantages = torch.tensor([1.0, -1.0])[batch.token_rows]
    terms = mgpo_token_loss(selected, selected.detach(), None, None, advantages, clip_ratio=0.2, kl_coef=0.0, entropy_coef=0.0, normaliser=selected.numel())
    terms.loss.backward()
    grad_rows = logits.grad.abs().sum(-1)
    assert grad_rows[~batch.predicts_generated].max().item() == 0.0
    assert (grad_rows[batch.predicts_generated] > 0).all()


# ----------------------------------------------------------------- learning
def test_a_few_steps_move_the_policy_towards_the_advantage(tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    config = tiny_training_config(protocol="single_turn", steps=3, max_new_tokens=12)
    trainer = MGPOTrainer(config)
    dataset = trainer.dataset

    def answer(trajectory, turn):  # half the group answers correctly, half wrongly
        truth = dataset[trajectory.sample_index].answer
        wrong = "ABCD"[("ABCD".index(truth) + 1) % 4]
        return f"\\boxed{{{truth if trajectory.rollout % 2 == 0 else wrong}}}"

    trainer.engine.extra_logits_processors = forcing(trainer.processor, answer)

    def mean_logprobs():
        probe = trainer.engine.run([0], group_size=2, greedy=True).trajectories  # rollout 0 right, 1 wrong
        batch = pack(probe, trainer.pad_id, trainer.engine.tokens.image_token_id)
        with torch.no_grad():
            logp, _ = token_logprobs(trainer.model, batch)
        return [logp[batch.token_rows == r].sum().item() for r in range(2)]

    right_before, wrong_before = mean_logprobs()
    history = trainer.train(progress=False)
    right_after, wrong_after = mean_logprobs()
    assert all(m["reward_mean"] == 0.5 and m["zero_advantage_groups"] == 0 for m in history)
    assert right_after > right_before + 0.5
    assert wrong_after < wrong_before - 0.5
    lines = (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert (Path(config.output_dir) / "curves.png").stat().st_size > 10_000
    saved = MGPOConfig.load(Path(config.output_dir) / "config.json")
    assert saved == config


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    straight = MGPOTrainer(tiny_training_config(tmp_path / "a", steps=4))
    straight.train(progress=False)

    first = MGPOTrainer(tiny_training_config(tmp_path / "b", steps=2))
    first.train(progress=False)
    checkpoint = Path(first.config.output_dir) / "checkpoints" / "step-000002"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "optimizer.pt").exists()
    del first
    resumed = MGPOTrainer(tiny_training_config(tmp_path / "b", steps=4))
    resumed.load_checkpoint()
    assert resumed.step == 2
    resumed.train(progress=False)

    a = dict(straight.model.named_parameters())
    b = dict(resumed.model.named_parameters())
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


WORKER = Path(__file__).with_name("distributed_worker.py")


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, tiny_training_config):
    # 2 steps of 2 questions x 4 rollouts: each of the two processes plays one question a step.
    config = tiny_training_config(prompts_per_step=2, mini_batch_prompts=2, micro_batch_size=2, save_every=100)
    config_file = tmp_path / "config.json"
    config.save(config_file)
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    accelerate = [sys.executable, "-m", "accelerate.commands.launch"]  # the venv's, with or without its console script
    two_processes = [*accelerate, "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    two_processes += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    for name, launcher in (("two", two_processes), ("one", [sys.executable])):
        command = [*launcher, str(WORKER), str(config_file), str(tmp_path / name)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "two" / "weights-rank0.pt")
    rank1 = torch.load(tmp_path / "two" / "weights-rank1.pt")
    single = torch.load(tmp_path / "one" / "weights-rank0.pt")
    start = torch.load(tmp_path / "one" / "weights-start.pt")
    moved = False
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks differ in {name}"
        assert torch.allclose(rank0[name], single[name], atol=1e-5, rtol=1e-4), f"{name}: 2 processes differ from 1"
        moved |= not torch.equal(single[name], start[name])
    assert moved, "training did not change the weights"


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"protocol": "three_turn"}, "protocol"),
        ({"group_size": 1}, "group_size"),
        ({"mini_batch_prompts": 3, "prompts_per_step": 4}, "multiple"),
        ({"temperature": 0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"clip_ratio": 1.5}, "clip_ratio"),
        ({"dtype": "int8"}, "dtype"),
        ({"distributed": "zero3"}, "distributed"),
        ({"min_pixels": 10_000, "max_pixels": 5_000}, "min_pixels"),
        ({"dataset_kwargs": "canvas=5"}, "dataset_kwargs"),
        ({"first_turn": "oracle", "protocol": "single_turn"}, "two_turn"),
        ({"first_turn": "closest"}, "first-turn rule"),
    ],
)
def test_malformed_configs_are_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        preset("tiny-cpu", **overrides)


def test_unknown_fields_and_presets_are_rejected():
    with pytest.raises(ValueError, match="unknown field"):
        MGPOConfig.from_dict({"learning_rat": 1e-5})
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_cli_flags_come_from_the_dataclass():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--preset", "paper", "--learning-rate", "3e-6", "--dataset-kwargs", '{"a": 1}', "--check-token-drift", "true"])
    config = config_from_args(args)
    assert config.learning_rate == 3e-6 and config.dataset_kwargs == {"a": 1} and config.check_token_drift is True
    assert config.group_size == 8 and config.prompts_per_step == 512  # the rest from the preset
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset-kwargs", "[1, 2]"])
    help_text = parser.format_help()
    assert "--kl-coef" in help_text and "KL penalty" in help_text


def test_replies_never_contain_image_or_vision_tokens(tiny, tiny_training_config):
    """An untrained model may sample <|image_pad|>; the engine must never let it into a reply."""
    model, processor = tiny
    image_pad = processor.image_token_id

    class PreferImagePad(LogitsProcessor):  # the worst case: the model wants nothing else
        def __call__(self, input_ids, scores):
            return scores

    engine = RolloutEngine(model, processor, env_maker(tiny_training_config()), max_new_tokens=8)
    bias = torch.zeros(model.config.text_config.vocab_size)
    bias[image_pad] = 1e4
    original = model.lm_head.forward
    model.lm_head.forward = lambda hidden: original(hidden) + bias
    try:
        result = engine.run([0], group_size=2, step=0)
    finally:
        model.lm_head.forward = original
    suppressed = set(engine.suppressed_ids)
    assert image_pad in suppressed and len(suppressed) >= 3
    for trajectory in result.trajectories:
        for segment in trajectory.segments:
            if segment.generated:
                assert not suppressed & set(segment.ids)
        assert len(trajectory.reply_lengths()) == 2  # both turns played: no feature/token mismatch


def test_a_scripted_first_turn_leaves_the_policy_only_the_answer(tiny_training_config):
    """With first_turn set, the rule's box is in the prompt (no loss), and each episode has one generated reply."""
    from mgpo_agents.trainer import MGPOTrainer
    from mgpo_env.geometry import contains

    trainer = MGPOTrainer(tiny_training_config(first_turn="oracle", steps=1))
    result = trainer.engine.run([0, 1], group_size=2)
    for trajectory in result.trajectories:
        assert len(trajectory.reply_lengths()) == 1 and trajectory.info["turn"] == 2
        assert trajectory.info["box_valid"] and contains(trajectory.info["crop_box"], trajectory.info["target_box"])
        assert len(trajectory.pixel_values) == 2  # the view and the oracle's crop, both in the prompt
    trainer.train(1, progress=False)
    assert trainer.step == 1
