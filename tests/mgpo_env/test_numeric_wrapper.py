"""NumericActionWrapper: SB3's check_env, action translation, and a short PPO run through the benchmark's code."""

from __future__ import annotations

import importlib.util
import string
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import mgpo_env  # noqa: F401
from mgpo_env.box_parser import parse_box
from mgpo_env.numeric_wrapper import NumericActionWrapper
from mgpo_datasets.synthetic import COLOUR_PAIRS

pytest.importorskip("stable_baselines3")
from stable_baselines3.common.env_checker import check_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COLOURS = list(COLOUR_PAIRS)


def base_env(protocol: str = "two_turn", box_frame: str = "pixel", question_types=("colour",), num_choices: int = 4) -> gym.Env:
    return gym.make(
        "mgpo/HighResVQA-v0",
        dataset_kwargs={"num_samples": 16, "canvas_size": 448, "question_types": list(question_types), "num_choices": num_choices},
        protocol=protocol,
        box_frame=box_frame,
        min_pixels=112 * 112,
        max_pixels=224 * 224,
        observation_image_shape=(224, 224),
    )


def load_benchmark():
    spec = importlib.util.spec_from_file_location("sb3_ppo_benchmark", ROOT / "benchmarks" / "sb3_ppo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "protocol, kwargs",
    [
        ("two_turn", {}),
        ("two_turn", {"answers": COLOURS, "box_format": "cxcywh"}),
        ("two_turn", {"action_bins": 8, "answers": COLOURS}),
        ("two_turn", {"answer_scores": True, "answers": COLOURS, "box_format": "cxcywh", "box_size_range": (0.2, 0.3)}),
        ("single_turn", {"action_bins": 4}),
        ("single_turn", {"image_shape": (48, 40)}),
    ],
)
def test_sb3_check_env_passes(protocol, kwargs):
    env = NumericActionWrapper(base_env(protocol), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 warns about spaces it cannot use well: none here
        check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


def test_observation_content():
    env = NumericActionWrapper(base_env(), answers=COLOURS)
    obs, info = env.reset(seed=0)
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    # state = turn one-hot (3) + offered-answer mask (4) + box_valid (1) + region (4)
    assert obs["state"].shape == (12,)
    assert obs["state"][:3].tolist() == [1.0, 0.0, 0.0]
    assert obs["state"][3:7].tolist() == [1.0] * 4  # all four colour pairs are offered
    assert obs["state"][7] == 0.0 and obs["state"][8:].tolist() == [0.0, 0.0, 1.0, 1.0]
    obs, _, _, _, info = env.step(np.array([-1, -1, 0, 0, 0], dtype=np.float32))  # top-left quarter
    assert info["crop_box"] == (0, 0, 224, 224)
    assert obs["state"][:3].tolist() == [0.0, 1.0, 0.0]
    assert obs["state"][7] == 1.0 and obs["state"][8:].tolist() == [0.0, 0.0, 0.5, 0.5]


def test_offered_mask_with_two_choices():
    env = NumericActionWrapper(base_env(num_choices=2), answers=COLOURS)
    obs, _ = env.reset(seed=0)
    choices = env.unwrapped.sample.choices
    mask = obs["state"][3:7]
    assert mask.sum() == 2.0
    assert [COLOURS[i] for i in np.flatnonzero(mask)] == sorted(choices, key=COLOURS.index)


@pytest.mark.parametrize("box_frame", ["pixel", "norm1000", "relative"])
def test_box_action_is_written_in_the_env_frame(box_frame):
    env = NumericActionWrapper(base_env(box_frame=box_frame), box_format="xyxy")
    env.reset(seed=0)
    # u = (0.25, 0.5, 0.75, 1.0): written in the env's frame, cropping the same original region.
    action = np.array([0.25, 0.5, 0.75, 1.0], dtype=np.float32) * 2 - 1
    obs, _, _, _, info = env.step(np.append(action, 0.0).astype(np.float32))
    coords = parse_box(info["text_action"]).coords
    expected = {"pixel": (56, 112, 168, 224), "norm1000": (250, 500, 750, 1000), "relative": (0.25, 0.5, 0.75, 1.0)}[box_frame]
    assert coords == pytest.approx(expected)
    assert info["box_valid"] and info["crop_box"] == (112, 224, 336, 448)


def test_corners_are_sorted_and_cxcywh_is_clipped():
    env = NumericActionWrapper(base_env(), box_format="xyxy")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0, 1.0, 0.0, 0.0, 0.0], dtype=np.float32))  # corners swapped
    assert info["crop_box"] == (224, 224, 448, 448)
    env = NumericActionWrapper(base_env(), box_format="cxcywh")
    env.reset(seed=0)
    # centre (1, 1), size (0.5, 0.5): clipped to the bottom-right quarter, not rejected.
    _, _, _, _, info = env.step(np.array([1.0, 1.0, 0.0, 0.0, 0.0], dtype=np.float32))
    assert info["box_valid"] and info["crop_box"] == (336, 336, 448, 448)


def test_answer_slots_pick_texts_and_letters():
    env = NumericActionWrapper(base_env(), answers=COLOURS)
    for index in range(4):
        env.reset(options={"index": index})
        sample = env.unwrapped.sample
        truth = COLOURS.index(sample.choices[string.ascii_uppercase.index(sample.answer)])
        env.step(np.zeros(5, dtype=np.float32))
        u = (truth + 0.5) / 4  # the middle of the true answer's slot
        _, reward, terminated, _, info = env.step(np.array([0, 0, 0, 0, 2 * u - 1], dtype=np.float32))
        assert terminated and reward == 1.0 and info["text_action"] == "\\boxed{%s}" % COLOURS[truth]
    # Letters, MultiDiscrete: slot k is letter k; past the last option, the last option.
    env = NumericActionWrapper(base_env(num_choices=2), action_bins=4, max_choices=4)
    env.reset(seed=0)
    env.step(np.array([0, 0, 3, 3, 0]))
    _, _, _, _, info = env.step(np.array([0, 0, 0, 0, 1]))
    assert info["text_action"] == "\\boxed{B}"
    env.reset(seed=0)
    env.step(np.array([0, 0, 3, 3, 0]))
    assert env.text_action(np.array([0, 0, 0, 0, 3])) == "\\boxed{B}"


def test_single_turn_answers_at_once_and_discrete_box_bins():
    env = NumericActionWrapper(base_env("single_turn"), answers=COLOURS)
    env.reset(seed=0)
    assert env.is_answer_turn()
    _, reward, terminated, _, info = env.step(np.zeros(5, dtype=np.float32))
    assert terminated and info["text_action"].startswith("\\boxed{") and reward in (0.0, 1.0)
    env = NumericActionWrapper(base_env(), action_bins=4, box_format="xyxy")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0, 0, 3, 3, 0]))  # bins 0 and 3 -> u = 0.125 and 0.875
    assert info["crop_box"] == (56, 56, 392, 392)


def test_answer_scores_and_box_size_range():
    env = NumericActionWrapper(base_env(), answers=COLOURS, answer_scores=True, box_format="cxcywh", box_size_range=(0.2, 0.3))
    assert env.action_space.shape == (8,)  # 4 box numbers + one score per answer
    env.reset(seed=0)
    # Centre (0.5, 0.5); u = 0 and 1 stand for sides 0.2 and 0.3 of the 224 view: 44.8 and 67.2 pixels.
    _, _, _, _, info = env.step(np.array([0, 0, -1, 1, 0, 0, 0, 0], dtype=np.float32))
    assert parse_box(info["text_action"]).coords == (89.0, 78.0, 135.0, 146.0)  # rounded outwards
    action = np.array([0, 0, 0, 0, -0.5, 0.9, 0.2, 0.3], dtype=np.float32)
    assert env.text_action(action) == "\\boxed{%s}" % COLOURS[1]  # the highest score wins
    with pytest.raises(ValueError, match="8 numbers"):
        env.text_action(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="box_size_range"):
        NumericActionWrapper(base_env(), box_size_range=(0.5, 0.2))
    with pytest.raises(ValueError, match="answer_scores"):
        NumericActionWrapper(base_env(), answer_scores=True, action_bins=4)


def test_wrapper_refuses_what_it_cannot_translate():
    with pytest.raises(ValueError, match="free"):
        NumericActionWrapper(base_env("free"))
    with pytest.raises(ValueError, match="box_format"):
        NumericActionWrapper(base_env(), box_format="xywh")
    with pytest.raises(ValueError, match="answers"):
        NumericActionWrapper(base_env(), answers=["red", "Red"])
    with pytest.raises(ValueError, match="action_bins"):
        NumericActionWrapper(base_env(), action_bins=1)
    env = NumericActionWrapper(base_env())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="5 numbers"):
        env.step(np.zeros(4, dtype=np.float32))


def test_benchmark_setting_hides_the_answer_until_cropped():
    bench = load_benchmark()
    setting = bench.Setting()
    env = bench.make_env(setting, seed=0, num_samples=8)
    for index in range(4):
        obs, info = env.reset(options={"index": index})
        colours = COLOUR_PAIRS[env.unwrapped.sample.metadata["attribute"]]
        scale = setting.image_side / setting.canvas_size
        x1, y1, x2, y2 = (int(v * scale) for v in info["target_box"])
        inside = obs["image"][y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].reshape(-1, 3).astype(float)
        # Every colour pair averages to the same flat grey in the first observation.
        assert np.abs(inside - 128).max() <= 1
        # The central bins' crop (sides 0.2-0.3 of the view) lands on the target and shows the colours.
        bins = setting.action_bins
        cx, cy = ((x1 + x2) / 2 / setting.image_side, (y1 + y2) / 2 / setting.image_side)
        obs, _, _, _, info = env.step(np.array([int(cx * bins), int(cy * bins), bins - 1, bins - 1, 0]))
        assert info["box_valid"]
        assert pure_pixels(obs["image"], colours) > 150  # of 56*56 = 3136


def pure_pixels(image: np.ndarray, colours) -> int:
    """How many pixels show each colour of the pair (L1 distance under 40): the smaller count."""
    px = image.reshape(-1, 3).astype(float)
    return int(min((np.abs(px - np.array(c, float)).sum(axis=1) < 40).sum() for c in colours))


def test_benchmark_centre_prior_biases_only_the_box_centre():
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO

    bench = load_benchmark()
    setting = bench.Setting()
    model = PPO("MultiInputPolicy", bench.make_env(setting, seed=0, num_samples=4), n_steps=8, batch_size=8, device="cpu", seed=0)
    before = model.policy.action_net.bias.detach().clone()
    bench.add_centre_prior(model, setting)
    shift = (model.policy.action_net.bias.detach() - before).numpy()
    bins = setting.action_bins
    x_shift = shift[:bins]
    assert np.argmax(x_shift) in (bins // 2 - 1, bins // 2) and x_shift[0] < x_shift[bins // 2] - 4
    assert np.allclose(x_shift, shift[bins : 2 * bins]) and np.allclose(shift[2 * bins :], 0.0)
    assert torch.get_num_threads() >= 1


@pytest.mark.slow
def test_ppo_short_run_plumbing():
    """A few hundred PPO steps through the benchmark's own code: it runs, numbers are sane (no learning asserted)."""
    bench = load_benchmark()
    setting = replace(bench.Setting(), train_samples=64)
    results = bench.run(setting, timesteps=256, eval_episodes=12, n_envs=2, seed=0, control=True)
    for key in ("random", "ppo_two_turn", "ppo_single_turn"):
        scores = results[key]
        assert 0.0 <= scores["accuracy"] <= 1.0
        assert scores["accuracy"] * 12 == pytest.approx(round(scores["accuracy"] * 12))  # whole episodes
    two = results["ppo_two_turn"]
    assert 0.0 <= two["crop_on_target"] <= two["valid_box_rate"] <= 1.0 and 0.0 <= two["target_in_crop"] <= 1.0
    assert results["centre_crop"]["valid_box_rate"] == 1.0
    assert two["train_seconds"] > 0 and two["train_steps_per_second"] > 0
    assert results["chance"] == 0.25
    text = bench.write_markdown(results, "python benchmarks/sb3_ppo.py --test", Path("/dev/null"))
    assert "| PPO | two_turn |" in text and "--test" in text
