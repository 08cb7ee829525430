"""HighResVQA-v0: the episode, spaces, info, seeding, modes and bad input."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import mgpo_env
from mgpo_env import EpisodeFinishedError, InvalidActionError, Sample, format_box
from mgpo_env.geometry import contains
from mgpo_env.highres_vqa import HighResVQAEnv

from tests.conftest import SMALL_TASK


def tight_box_text(info, margin=40, frame="pixel"):
    """A box around the annotated target, written in the model's frame."""
    (vw, vh), (ow, oh) = info["model_image_size"], info["original_image_size"]
    x1, y1, x2, y2 = info["target_box"]
    box = [max(0, (x1 - margin) * vw / ow), max(0, (y1 - margin) * vh / oh), min(vw, (x2 + margin) * vw / ow), min(vh, (y2 + margin) * vh / oh)]
    box = [float(round(v)) for v in box]  # whole view pixels, then exact floats in other frames
    if frame == "norm1000":
        box = [box[0] / vw * 1000, box[1] / vh * 1000, box[2] / vw * 1000, box[3] / vh * 1000]
    if frame == "relative":
        box = [box[0] / vw, box[1] / vh, box[2] / vw, box[3] / vh]
    if frame == "pixel":
        return format_box(box)
    return "```json\n" + json.dumps([{"bbox_2d": box, "label": "target"}]) + "\n```"


def test_registration_paths():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512})
    assert isinstance(env.unwrapped, HighResVQAEnv)
    env2 = gym.make("mgpo_env:mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512})
    assert isinstance(env2.unwrapped, HighResVQAEnv)


@pytest.mark.parametrize("protocol", ["two_turn", "free", "single_turn"])
def test_check_env_passes_without_warnings(protocol):
    # Through gym.make, so the env has a spec and check_env also tries every render mode.
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, protocol=protocol).unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)


def test_unregistered_import_free_make_in_subprocess():
    import subprocess
    import sys

    code = "import gymnasium as gym; env = gym.make('mgpo_env:mgpo/HighResVQA-v0', dataset_kwargs={'num_samples': 1, 'canvas_size': 512}); print(env.reset(seed=0)[1]['sample_id'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "synthetic-0-0"


def test_two_turn_episode_crops_the_original(small_env):
    obs, info = small_env.reset(seed=3)
    env = small_env.unwrapped
    assert obs["turn"] == 0 and info["answer"] is None
    system, user = obs["history"]
    assert system["role"] == "system" and user["role"] == "user" and user["content"].startswith("<image>")
    # Turn 1 withholds the options; turn 2 shows them.
    assert "(A)" not in user["content"]
    original = env.images.get(env.sample.sample_id, env.sample.image)
    view = env.chat_images()[0]
    assert view.size == info["model_image_size"] and view.width % 28 == 0 and view.height % 28 == 0
    w, h = obs["image_size"]
    assert np.array_equal(obs["image"][:h, :w], np.asarray(view)) and not obs["image"][h:, :].any()

    obs, reward, terminated, truncated, info = small_env.step(tight_box_text(info))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["box_valid"] and info["crop_box"] is not None
    assert contains(info["crop_box"], info["target_box"])
    crop_view = env.chat_images()[1]
    expected = mgpo_env.resize_to_budget(original.crop(info["crop_box"]), env.budget)
    assert np.array_equal(np.asarray(crop_view), np.asarray(expected))
    assert info["visual_tokens"] == (crop_view.width // 28) * (crop_view.height // 28)
    assert info["visual_tokens_total"] == info["visual_tokens"] + (view.width // 28) * (view.height // 28)
    last = obs["history"][-1]["content"]
    assert "(A)" in last and last.startswith("<image>")

    letter = env.sample.answer
    obs, reward, terminated, truncated, info = small_env.step(f"It is clear now. \\boxed{{{letter}}}")
    assert (reward, terminated, info["correct"], info["answer"]) == (1.0, True, True, letter)
    with pytest.raises(EpisodeFinishedError):
        small_env.step("\\boxed{A}")


def test_invalid_box_falls_back_to_the_original_view(small_env):
    obs, info = small_env.reset(seed=0)
    obs, reward, terminated, _, info = small_env.step("I will not give a box")
    assert not terminated and not info["box_valid"] and info["crop_box"] is None
    assert "no box" in info["box_error"]
    env = small_env.unwrapped
    assert len(env.chat_images()) == 2 and env.chat_images()[1] is env.chat_images()[0]
    assert "not valid" in obs["history"][-1]["content"]
    wrong = "ABCD"[("ABCD".index(env.sample.answer) + 1) % len(env.sample.choices)]
    _, reward, terminated, _, info = small_env.step(f"\\boxed{{{wrong}}}")
    assert terminated and reward == 0.0 and info["correct"] is False


def test_box_outside_the_view_is_invalid_and_clamp_accepts_it():
    kwargs = dict(dataset_kwargs=SMALL_TASK)
    env = gym.make("mgpo/HighResVQA-v0", **kwargs)
    _, info = env.reset(seed=0)
    w, h = info["model_image_size"]
    _, _, _, _, info = env.step(f"[-10, -10, {w + 50}, {h // 2}]")
    assert not info["box_valid"] and "outside" in info["box_error"]
    env = gym.make("mgpo/HighResVQA-v0", box_policy={"clamp": True}, **kwargs)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(f"[-10, -10, {w + 50}, {h // 2}]")
    ow, oh = info["original_image_size"]
    assert info["box_valid"] and info["crop_box"][0] == 0 and info["crop_box"][2] == ow


@pytest.mark.parametrize("frame", ["pixel", "norm1000", "relative"])
def test_every_box_frame_crops_the_same_region(frame):
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, box_frame=frame)
    _, info = env.reset(seed=5)
    _, _, _, _, info = env.step(tight_box_text(info, frame=frame))
    reference = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK)
    _, ref_info = reference.reset(seed=5)
    _, _, _, _, ref_info = reference.step(tight_box_text(ref_info))
    assert info["box_valid"] and info["crop_box"] == ref_info["crop_box"]
    assert frame == "pixel" or "scale" in env.unwrapped._messages[0].text() or "fractions" in env.unwrapped._messages[0].text()


def test_seeding_is_deterministic_and_seeds_differ():
    def run(seed):
        env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 50, "canvas_size": 768})
        obs, info = env.reset(seed=seed)
        return obs, info

    (o1, i1), (o2, i2), (_, i3) = run(11), run(11), run(12)
    assert i1 == i2 and np.array_equal(o1["image"], o2["image"]) and o1["history"] == o2["history"]
    assert i1["sample_id"] != i3["sample_id"]


def test_reset_options_pick_a_sample(small_env):
    _, info = small_env.reset(options={"index": 4})
    assert info["sample_id"] == "synthetic-0-4"
    _, info = small_env.reset(options={"sample_id": "synthetic-0-7"})
    assert info["sample_id"] == "synthetic-0-7"
    with pytest.raises(ValueError, match="unknown reset option"):
        small_env.reset(options={"idx": 1})
    with pytest.raises(ValueError, match="index"):
        small_env.reset(options={"index": 99})
    with pytest.raises(KeyError):
        small_env.reset(options={"sample_id": "nope"})


def test_a_group_decodes_the_image_once(small_env):
    env = small_env.unwrapped
    for _ in range(8):
        _, info = small_env.reset(options={"index": 2})
        small_env.step(tight_box_text(info))
    assert env.images.decodes == 1


def test_image_observations_are_fresh_arrays_of_the_view_zero_padded(small_env):
    first, _ = small_env.reset(options={"index": 2})
    first["image"][:] = 7  # the caller's own array: scribbling on it changes nothing the env holds
    again, info = small_env.reset(options={"index": 2})
    width, height = again["image_size"]
    view = np.asarray(small_env.unwrapped.chat_messages()[-1]["content"][0]["image"])
    assert view.shape == (height, width, 3)
    assert (again["image"][:height, :width] == view).all()
    assert not again["image"][height:].any() and not again["image"][:, width:].any()
    crop, *_ = small_env.step(tight_box_text(info))
    crop_view = np.asarray(small_env.unwrapped.chat_images()[-1])
    assert crop["image"].base is None and (crop["image"][: crop_view.shape[0], : crop_view.shape[1]] == crop_view).all()


def test_shuffle_sampling_visits_every_sample_once_per_epoch():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 6, "canvas_size": 512}, sampling="shuffle")
    ids = [env.reset(seed=4 if i == 0 else None)[1]["sample_id"] for i in range(12)]
    assert sorted(ids[:6]) == sorted(ids[6:]) == sorted(f"synthetic-0-{i}" for i in range(6))
    again = [env.reset(seed=4 if i == 0 else None)[1]["sample_id"] for i in range(6)]
    assert again == ids[:6]


def test_free_mode_crops_until_it_answers():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, protocol="free", max_turns=3)
    obs, info = env.reset(seed=1)
    assert "(A)" in obs["history"][1]["content"]  # free mode shows the options at once
    obs, _, terminated, _, info = env.step(tight_box_text(info, margin=200))
    assert not terminated and info["num_crops"] == 1
    obs, _, terminated, _, info = env.step(tight_box_text(info, margin=60))
    assert not terminated and info["num_crops"] == 2
    assert "last reply" in obs["history"][-1]["content"]
    obs, reward, terminated, _, info = env.step(tight_box_text(info))  # a box at the last turn is graded
    assert terminated and reward == 0.0 and info["answer"] is None


def test_free_mode_answer_ends_early():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, protocol="free")
    env.reset(seed=2)
    letter = env.unwrapped.sample.answer
    _, reward, terminated, _, info = env.step(f"\\boxed{{{letter}}}")
    assert terminated and reward == 1.0 and info["turn"] == 1 and info["num_crops"] == 0


def test_free_mode_latest_reference_zooms_into_the_crop():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, protocol="free", box_reference="latest", box_policy={"min_side": 2})
    _, info = env.reset(seed=1)
    w, h = info["model_image_size"]
    _, _, _, _, info = env.step(f"[0, 0, {w // 2}, {h // 2}]")
    first = info["crop_box"]
    vw, vh = info["model_image_size"]
    _, _, _, _, info = env.step(f"[0, 0, {env.unwrapped.chat_images()[-1].width // 2}, {env.unwrapped.chat_images()[-1].height // 2}]")
    second = info["crop_box"]
    assert second[0] == first[0] and second[2] == pytest.approx((first[0] + first[2]) / 2, abs=2)


def test_single_turn_protocol_is_the_grpo_baseline():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, protocol="single_turn")
    obs, info = env.reset(seed=0)
    assert "(A)" in obs["history"][1]["content"]
    _, reward, terminated, _, info = env.step("\\boxed{%s}" % env.unwrapped.sample.answer)
    assert terminated and reward == 1.0 and info["crop_box"] is None and not info["box_valid"]


@pytest.mark.parametrize(
    "action",
    ["", "\x00" * 10, "[" * 100_000, "```json\n" * 1000, "\\boxed{" * 1000, '{"bbox_2d": [1e308, -1e308, 1e308, 1e308]}', "[0, 0, 0, 0]", "ü" * 70_000],
)
def test_hostile_actions_never_crash(small_env, action):
    small_env.reset(seed=0)
    _, _, terminated, _, info = small_env.step(action)
    assert not terminated and not info["box_valid"]
    _, reward, terminated, _, _ = small_env.step(action)
    assert terminated and reward == 0.0


def test_random_actions_from_the_action_space(small_env):
    small_env.action_space.seed(0)
    for episode in range(3):
        small_env.reset(seed=episode)
        terminated = False
        while not terminated:
            _, reward, terminated, _, _ = small_env.step(small_env.action_space.sample())
        assert reward in (0.0, 1.0)


def test_non_string_action_is_a_typed_error(small_env):
    small_env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        small_env.unwrapped.step(b"[1, 2, 3, 4]")


def test_step_before_reset_raises():
    env = HighResVQAEnv(dataset_kwargs=SMALL_TASK)
    with pytest.raises(EpisodeFinishedError):
        env.step("hi")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"protocol": "three_turn"}, "protocol"),
        ({"box_frame": "percent"}, "box_frame"),
        ({"sampling": "weighted"}, "sampling"),
        ({"max_turns": 0}, "max_turns"),
        ({"min_pixels": 10}, "min_pixels"),
        ({"max_pixels": 1000, "min_pixels": 5000}, "max_pixels"),
        ({"box_policy": {"min_size": 3}}, "box_policy"),
        ({"render_mode": "human"}, "render_mode"),
        ({"dataset": "imagenet:/x"}, "unknown dataset spec"),
        ({"dataset": "vstar"}, "needs a path"),
        ({"dataset_kwargs": {"canvas_size": 10}}, "canvas_size"),
        ({"dataset_kwargs": {"colour": 1}}, "colour"),
    ],
)
def test_bad_config_names_the_problem(kwargs, match):
    kwargs.setdefault("dataset_kwargs", SMALL_TASK)
    with pytest.raises((ValueError, TypeError), match=match):
        HighResVQAEnv(**kwargs)


def test_structured_chat_messages_hold_the_images_in_order(small_env):
    _, info = small_env.reset(seed=0)
    small_env.step(tight_box_text(info))
    messages = small_env.unwrapped.chat_messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    images = [part["image"] for m in messages for part in m["content"] if part["type"] == "image"]
    assert len(images) == 2 and all(isinstance(im, Image.Image) for im in images)
    assert images == small_env.unwrapped.chat_images()
    assert messages[2]["content"] == [{"type": "text", "text": tight_box_text(info)}]


def test_render_rgb_array_draws_predicted_and_target_boxes():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, render_mode="rgb_array", render_max_side=512)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(tight_box_text(info, margin=60))
    frame = env.render()
    assert frame.dtype == np.uint8 and max(frame.shape[:2]) == 512
    scale = 512 / max(info["original_image_size"])
    x1, y1 = (round(v * scale) for v in info["crop_box"][:2])
    tx1, ty1 = (round(v * scale) for v in info["target_box"][:2])
    assert tuple(frame[y1 + 1, x1 + 1]) == (230, 40, 40)
    assert tuple(frame[ty1 + 1, tx1 + 1]) == (30, 200, 60)


def test_render_ansi_is_the_transcript():
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, render_mode="ansi")
    env.reset(seed=0)
    env.step("[0, 0, 100, 100]")
    env.step("\\boxed{A}")
    text = env.render()
    assert text.count("[assistant]") == 2 and "<image" in text and "[result]" in text


def test_custom_samples_and_free_form_answers():
    image = Image.new("RGB", (800, 600), (10, 20, 30))
    samples = [Sample("s0", image, "How many dots?", "three"), Sample("s1", image, "Colour?", "B", ("red", "blue"), ((10, 10, 50, 50),))]
    env = gym.make("mgpo/HighResVQA-v0", dataset=samples)
    _, info = env.reset(options={"index": 0})
    assert info["target_box"] is None
    env.step("[0, 0, 100, 100]")
    _, reward, _, _, info = env.step("\\boxed{3}")
    assert reward == 1.0 and info["answer"] == "3"
    _, info = env.reset(options={"sample_id": "s1"})
    assert info["target_box"] == (10.0, 10.0, 50.0, 50.0)


def test_templates_are_configurable():
    templates = mgpo_env.PromptTemplates(user_grounding="Q: {question} -- box please")
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=SMALL_TASK, templates=templates)
    obs, _ = env.reset(seed=0)
    assert obs["history"][1]["content"].endswith("-- box please")
    with pytest.raises(ValueError, match="placeholder"):
        mgpo_env.PromptTemplates(user_grounding="{questoin}")
