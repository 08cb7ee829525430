"""The environment's prompt knobs: ``templates`` overrides (:mod:`mgpo_env.templates`) and ``image_after_text``."""

import gymnasium as gym
import pytest

import mgpo_env  # noqa: F401  (registers mgpo/HighResVQA-v0)
from mgpo_env.templates import PromptTemplates


def test_template_overrides_from_a_dict_and_unknown_names_refused():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512}, templates={"user_grounding": "Q: {question}"})
    obs, _ = env.reset(options={"index": 0})
    assert obs["history"][-1]["content"].endswith("Q: " + env.unwrapped.sample.question)
    with pytest.raises(ValueError, match="unknown template field"):
        PromptTemplates.with_overrides({"user_groundin": "x"})


@pytest.mark.parametrize("after", [False, True])
def test_image_after_text_orders_every_user_message(after):
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512}, image_after_text=after, min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    env.reset(options={"index": 0})
    env.step("[0,0,100,100]")
    users = [m for m in env.unwrapped.chat_messages() if m["role"] == "user"]
    assert len(users) == 2
    for message in users:
        kinds = [part["type"] for part in message["content"]]
        assert kinds == (["text", "image"] if after else ["image", "text"])
