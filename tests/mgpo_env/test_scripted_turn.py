"""Scripted first turns (mgpo_env/scripted_turn.py): the random, oracle and fixed-box baselines."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import mgpo_env  # noqa: F401
from mgpo_env.geometry import BoxPolicy, contains, original_to_view, validate_box
from mgpo_env.scripted_turn import ScriptedFirstTurn, check_rule, oracle_box, random_box

TASK = {"num_samples": 6, "canvas_size": 896, "target_size": 64, "clutter": 5}
BUDGET = dict(min_pixels=32 * 28 * 28, max_pixels=64 * 28 * 28)  # a 224-pixel view of the 896-pixel canvas


def make(rule, **kwargs):
    return ScriptedFirstTurn(gym.make("mgpo/HighResVQA-v0", dataset_kwargs=TASK, box_frame="pixel", **BUDGET, **kwargs), rule)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), width=st.integers(60, 600), height=st.integers(60, 600))
def test_random_boxes_pass_the_side_rule_and_stay_in_the_view(seed, width, height):
    box = random_box(np.random.default_rng(seed), (width, height))
    accepted, reason = validate_box(box, (width, height), BoxPolicy())
    assert accepted is not None, reason


def test_random_boxes_are_free_in_place_and_log_uniform_in_size():
    rng = np.random.default_rng(0)
    boxes = np.array([random_box(rng, (224, 224)) for _ in range(4000)])
    widths = boxes[:, 2] - boxes[:, 0]
    assert len(set(boxes[:, 0])) > 100 and len(set(widths)) > 100  # far more than a few fixed boxes
    # log-uniform on [29, 224]: the median side is the geometric mean, about 80
    assert 70 < np.median(widths) < 92
    assert np.corrcoef(widths, boxes[:, 3] - boxes[:, 1])[0, 1] == pytest.approx(0, abs=0.06)  # width and height drawn apart


@settings(max_examples=300, deadline=None)
@given(x=st.floats(0, 880), y=st.floats(0, 880), w=st.floats(1, 400), h=st.floats(1, 400))
def test_the_oracle_box_holds_the_target_and_is_valid(x, y, w, h):
    view, original = (224, 224), (896, 896)
    target = (x, y, min(x + w, 896), min(y + h, 896))
    if target[2] - target[0] < 0.5 or target[3] - target[1] < 0.5:
        return
    box = oracle_box(target, view, original)
    assert validate_box(box, view, BoxPolicy())[0] is not None
    assert contains(box, original_to_view(target, view, original))
    tx1, ty1, tx2, ty2 = original_to_view(target, view, original)
    # No larger than needed: the target's rounded-out side, or the smallest valid side (29).
    assert box[2] - box[0] <= max(29, np.ceil(tx2) - np.floor(tx1)) and box[3] - box[1] <= max(29, np.ceil(ty2) - np.floor(ty1))


def test_oracle_turn_crops_the_target_and_the_agent_only_answers():
    env = make("oracle")
    observation, info = env.reset(seed=0)
    assert info["turn"] == 1 and info["box_valid"] and contains(info["crop_box"], info["target_box"])
    roles = [m["role"] for m in observation["history"]]
    assert roles == ["system", "user", "assistant", "user"] and observation["history"][2]["content"] == info["scripted_box"]
    messages = env.unwrapped.chat_messages()
    assert sum(part["type"] == "image" for m in messages for part in m["content"]) == 2  # the view and the crop
    letter = env.unwrapped.sample.answer
    _, reward, terminated, truncated, info = env.step(f"\\boxed{{{letter}}}")
    assert (reward, terminated, truncated, info["correct"]) == (1.0, True, False, True)


def test_fixed_turn_crops_the_same_region_of_every_image():
    env = make("fixed:56,56,168,168")
    crops = {tuple(env.reset(options={"index": i})[1]["crop_box"]) for i in range(4)}
    assert crops == {(224, 224, 672, 672)}  # 4x the view's pixels


def test_random_turn_is_repeatable_with_a_seed_and_varies_without():
    first = [make("random").reset(seed=5)[1]["scripted_box"] for _ in range(2)]
    env = make("random")
    env.reset(seed=5)
    later = {env.reset()[1]["scripted_box"] for _ in range(6)}
    assert first[0] == first[1] and len(later) > 3


def test_the_wrapped_environment_passes_gymnasiums_checker():
    check_env(make("random").unwrapped)  # the base environment, as always
    check_env(make("oracle"), skip_render_check=True)


@pytest.mark.parametrize("rule", ["", "closest", "fixed:1,2,3", "fixed:a,b,c,d", "fixed:1,2,3,nan"])
def test_bad_rules_are_refused(rule):
    assert check_rule(rule) is not None
    with pytest.raises(ValueError):
        make(rule)


def test_a_single_turn_environment_is_refused():
    with pytest.raises(ValueError, match="two_turn"):
        ScriptedFirstTurn(gym.make("mgpo/HighResVQA-v0", dataset_kwargs=TASK, protocol="single_turn"), "random")
