"""Gymnasium vector envs over mgpo/HighResVQA-v0: batching, rewards, NEXT_STEP autoreset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

import mgpo_env  # noqa: F401
from mgpo_env.vector import env_fns, make_vector_env

# A small canvas and budget: each env renders a 512-pixel image and shows it at 112x112.
ENV_KWARGS = dict(
    dataset_kwargs={"num_samples": 6, "canvas_size": 512},
    observation_image_shape=(112, 112),
    min_pixels=56 * 56,
    max_pixels=112 * 112,
)


def correct_answer(envs: SyncVectorEnv, i: int) -> str:
    return "\\boxed{%s}" % envs.envs[i].unwrapped.sample.answer


def wrong_answer(envs: SyncVectorEnv, i: int) -> str:
    sample = envs.envs[i].unwrapped.sample
    letters = "ABCD"[: len(sample.choices)]
    return "\\boxed{%s}" % next(letter for letter in letters if letter != sample.answer)


def test_sync_batches_observations_and_text_actions():
    envs = make_vector_env(3, **ENV_KWARGS)
    assert isinstance(envs, SyncVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = envs.reset(seed=7)
    assert obs["image"].shape == (3, 112, 112, 3) and obs["image"].dtype == np.uint8
    assert obs["image_size"].tolist() == [[112, 112]] * 3
    assert obs["turn"].tolist() == [0, 0, 0]
    # The variable-length history is not stacked: one tuple of messages per env.
    assert isinstance(obs["history"], tuple) and len(obs["history"]) == 3
    assert [m["role"] for m in obs["history"][0]] == ["system", "user"]
    assert envs.observation_space["image"].shape == (3, 112, 112, 3)
    # Seeds s, s+1, s+2: the same seed gives the same samples.
    again, info2 = make_vector_env(3, **ENV_KWARGS).reset(seed=7)
    assert list(info["sample_id"]) == list(info2["sample_id"])
    np.testing.assert_array_equal(obs["image"], again["image"])

    # Text actions batch as a tuple of strings (the batched action space is a Tuple of text spaces).
    actions = ("[0, 0, 56, 56]", "no box at all", "[0, 0, 10, 10]")
    assert envs.action_space.contains(actions)
    obs, reward, terminated, truncated, info = envs.step(actions)
    assert info["box_valid"].tolist() == [True, False, False]
    assert info["crop_box"][0] == (0, 0, 256, 256)  # 56 of 112 view pixels = half the 512 original
    assert info["crop_box"][1] is None
    assert reward.tolist() == [0.0, 0.0, 0.0] and terminated.tolist() == [False] * 3
    assert obs["turn"].tolist() == [1, 1, 1]
    assert [len(h) for h in obs["history"]] == [4, 4, 4]
    envs.close()


def test_sync_rewards_and_next_step_autoreset():
    envs = make_vector_env(2, **ENV_KWARGS)
    obs, info = envs.reset(seed=0)
    first_ids = list(info["sample_id"])
    envs.step(("[0, 0, 60, 60]", "[0, 0, 60, 60]"))
    answers = (correct_answer(envs, 0), wrong_answer(envs, 1))
    obs, reward, terminated, truncated, info = envs.step(answers)
    assert reward.tolist() == [1.0, 0.0]
    assert terminated.tolist() == [True, True] and truncated.tolist() == [False, False]
    assert info["correct"].tolist() == [True, False]
    assert obs["turn"].tolist() == [2, 2]  # the terminal observation itself

    # NEXT_STEP: this step resets both envs and ignores the actions entirely.
    obs, reward, terminated, truncated, info = envs.step(("\\boxed{A}", "[0, 0, 60, 60]"))
    assert obs["turn"].tolist() == [0, 0]
    assert reward.tolist() == [0.0, 0.0] and terminated.tolist() == [False, False]
    assert info["box_valid"].tolist() == [False, False]  # the reset info: no box yet
    assert [len(h) for h in obs["history"]] == [2, 2]
    for i in range(2):
        assert envs.envs[i].unwrapped.groundings == []  # the ignored action did not ground anything
    # New episodes go on normally.
    obs, reward, terminated, truncated, info = envs.step(("[0, 0, 60, 60]", "[0, 0, 60, 60]"))
    assert obs["turn"].tolist() == [1, 1] and info["box_valid"].tolist() == [True, True]
    assert len(first_ids) == 2
    envs.close()


def test_free_protocol_episodes_end_independently():
    envs = make_vector_env(2, protocol="free", max_turns=3, **ENV_KWARGS)
    envs.reset(seed=1)
    # env 0 answers at once, env 1 crops first.
    obs, reward, terminated, _, _ = envs.step(("\\boxed{A}", "[0, 0, 60, 60]"))
    assert terminated.tolist() == [True, False]
    obs, reward, terminated, _, info = envs.step(("ignored: autoreset", "[0, 0, 80, 80]"))
    assert obs["turn"].tolist() == [0, 2]
    assert terminated.tolist() == [False, False]
    assert info["num_crops"].tolist() == [0, 2]
    envs.close()


def test_async_vector_env_matches_sync():
    sync = make_vector_env(2, **ENV_KWARGS)
    asyn = make_vector_env(2, asynchronous=True, **ENV_KWARGS)
    try:
        assert isinstance(asyn, AsyncVectorEnv)
        obs_s, info_s = sync.reset(seed=3)
        obs_a, info_a = asyn.reset(seed=3)
        np.testing.assert_array_equal(obs_s["image"], obs_a["image"])
        assert list(info_s["sample_id"]) == list(info_a["sample_id"])
        assert obs_a["history"] == obs_s["history"]
        step_s = sync.step(("[0, 0, 60, 60]", "nothing"))
        step_a = asyn.step(("[0, 0, 60, 60]", "nothing"))
        np.testing.assert_array_equal(step_s[0]["image"], step_a[0]["image"])
        assert step_a[4]["box_valid"].tolist() == [True, False]
        answers = tuple(correct_answer(sync, i) for i in range(2))
        reward_s = sync.step(answers)[1]
        reward_a = asyn.step(answers)[1]
        assert reward_s.tolist() == reward_a.tolist() == [1.0, 1.0]
        obs_a = asyn.step(("x", "y"))[0]  # autoreset step
        assert obs_a["turn"].tolist() == [0, 0]
    finally:
        sync.close()
        asyn.close()


def test_async_needs_shared_memory_off():
    # What make_vector_env works around: the history Sequence space has no fixed shape.
    with pytest.raises(TypeError, match="shared_memory"):
        AsyncVectorEnv(env_fns(1, **ENV_KWARGS))
    with pytest.raises(ValueError, match="shared_memory"):
        make_vector_env(1, asynchronous=True, vector_kwargs={"shared_memory": True}, **ENV_KWARGS)


def test_gym_make_vec_sync():
    envs = gym.make_vec("mgpo/HighResVQA-v0", num_envs=2, vectorization_mode="sync", **ENV_KWARGS)
    obs, _ = envs.reset(seed=0)
    assert obs["image"].shape == (2, 112, 112, 3)
    envs.close()


def test_env_fns_validates():
    with pytest.raises(ValueError):
        env_fns(0)
