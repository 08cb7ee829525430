"""The TRL adapter: prompt dataset, per-rollout tool environments, reward functions, the crop helper,
and GRPOTrainer steps on the tiny Qwen2.5-VL with images returned by the crop tool."""

from __future__ import annotations

import os
import random
import string

import numpy as np
import pytest
from PIL import Image

from mgpo_env.cropping import InvalidBoxError, crop_original, crop_to_view, map_box_to_original
from mgpo_env.geometry import BoxPolicy
from mgpo_env.grading import answer_reward
from mgpo_env.highres_vqa import HighResVQAEnv
from mgpo_env.image_budget import ImageBudget

datasets = pytest.importorskip("datasets")
from mgpo_agents.trl_adapter import (  # noqa: E402
    HighResVQAAnswerToolEnv,
    HighResVQAToolEnv,
    build_prompt_dataset,
    enable_tool_calling,
    make_environment_factory,
    tool_chat_template,
)

DATASET_KWARGS = {"num_samples": 8, "canvas_size": 512}
SMALL_BUDGET = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}


# --------------------------------------------------------------------------- crop helper
def test_crop_to_view_matches_the_environment():
    env = HighResVQAEnv(dataset_kwargs={"num_samples": 4, "canvas_size": 1000})
    rng = random.Random(0)
    for trial in range(12):
        env.reset(options={"index": trial % 4})
        original = env.images.get(env.sample.sample_id, env.sample.image)
        view = env.chat_images()[0]
        x1, y1 = rng.uniform(0, 600), rng.uniform(0, 600)
        box = (x1, y1, x1 + rng.uniform(20, 380), y1 + rng.uniform(20, 380))
        text = "[%r, %r, %r, %r]" % box
        _, _, _, _, info = env.step(text)
        expected_box, error = map_box_to_original(box, view_size=view.size, original_size=original.size)
        assert expected_box == info["crop_box"] and (error is None) == info["box_valid"]
        if info["box_valid"]:
            ours = crop_to_view(original, text)  # view_size defaults to the env's first view
            assert ours.size == env.chat_images()[-1].size
            assert np.array_equal(np.asarray(ours), np.asarray(env.chat_images()[-1]))
        else:
            with pytest.raises(InvalidBoxError, match=info["box_error"].split(" ")[0]):
                crop_to_view(original, text)


def test_crop_helpers_frames_and_errors():
    original = Image.new("RGB", (2000, 1000), "white")
    assert map_box_to_original((0.5, 0, 1, 1), view_size=(500, 250), original_size=(2000, 1000), frame="relative") == ((1000, 0, 2000, 1000), None)
    assert map_box_to_original((500, 0, 1000, 1000), view_size=(500, 250), original_size=(2000, 1000), frame="norm1000")[0] == (1000, 0, 2000, 1000)
    assert map_box_to_original("nothing", view_size=(500, 250), original_size=(2000, 1000)) == (None, "no box found in the text")
    assert "outside" in map_box_to_original((0, 0, 600, 100), view_size=(500, 250), original_size=(2000, 1000))[1]
    clamped, _ = map_box_to_original((0, 0, 600, 100), view_size=(500, 250), original_size=(2000, 1000), policy=BoxPolicy(clamp=True))
    assert clamped == (0, 0, 2000, 400)
    with pytest.raises(InvalidBoxError, match="4 numbers"):
        crop_to_view(original, [1, 2, 3])
    tiny = ImageBudget(min_pixels=28 * 28, max_pixels=56 * 56)  # the view is 56x28: no side over 28 without min_side=0
    with pytest.raises(InvalidBoxError, match="longer than 28"):
        crop_to_view(original, (0, 0, 0.5, 0.5), frame="relative", budget=tiny)
    crop = crop_to_view(original, (0, 0, 0.5, 0.5), frame="relative", budget=tiny, policy=BoxPolicy(min_side=0))
    assert crop.size == (56, 28)  # 1000x500 original pixels fitted to 56*56 pixels, sides multiples of 28
    assert crop_original(original, (0, 0, 500, 500), tiny).size == (56, 56)
    assert crop_original(original, (0, 0, 2000, 1000), tiny).size == (56, 28)


# ------------------------------------------------------------------------- reward function
def test_answer_reward_as_a_trl_reward_function():
    # What GRPOTrainer passes: prompts, completions (tool conversations here), completion_ids,
    # every dataset column except the prompt, and its own extras.
    dataset = build_prompt_dataset(dataset_kwargs=DATASET_KWARGS)
    rows = [dataset[i] for i in range(3)]
    wrong = [next(l for l in "ABCD" if l != r["answer"]) for r in rows]
    completions = [
        [
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "crop", "arguments": {"x1": 0, "y1": 0, "x2": 99, "y2": 99}}}]},
            {"role": "tool", "name": "crop", "content": [{"type": "image", "image": Image.new("RGB", (28, 28))}, {"type": "text", "text": "Region"}]},
            {"role": "assistant", "content": "The crop shows it. \\boxed{%s}" % rows[0]["answer"]},
        ],
        [{"role": "assistant", "content": "\\boxed{%s}" % wrong[1]}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Answer: %s" % rows[2]["answer"]}]}],
    ]
    kwargs = {key: [r[key] for r in rows] for key in dataset.column_names if key != "prompt"}
    rewards = answer_reward(
        prompts=[r["prompt"] for r in rows],
        completions=completions,
        completion_ids=[[1], [2], [3]],
        trainer_state=None,
        log_extra=lambda *a, **k: None,
        log_metric=lambda *a, **k: None,
        environments=None,
        **kwargs,
    )
    assert rewards == [1.0, 0.0, 1.0]
    # The option's text is accepted too (the grader maps it to its letter).
    text = rows[0]["choices"][string.ascii_uppercase.index(rows[0]["answer"])]
    assert answer_reward(["p"], ["\\boxed{%s}" % text], answer=[rows[0]["answer"]], choices=[rows[0]["choices"]]) == [1.0]


# ---------------------------------------------------------------------------- dataset
def test_build_prompt_dataset_rows_match_samples():
    dataset = build_prompt_dataset(dataset_kwargs=DATASET_KWARGS, max_crops=2, box_frame="norm1000")
    env = HighResVQAEnv(dataset_kwargs=DATASET_KWARGS)
    assert len(dataset) == 8
    for i in (0, 5):
        row, sample = dataset[i], env.dataset[i]
        assert row["sample_id"] == sample.sample_id and row["answer"] == sample.answer
        assert row["choices"] == list(sample.choices) and row["question"] == sample.question
        system, user = row["prompt"]
        assert system["role"] == "system" and "0-1000" in system["content"] and "up to 2 times" in system["content"]
        assert "\\boxed{}" in system["content"]
        assert user["content"].startswith(sample.question) and "(A) " + sample.choices[0] in user["content"]
    tool_version = build_prompt_dataset(dataset_kwargs=DATASET_KWARGS, answer_tool=True, indices=[3])
    assert len(tool_version) == 1 and "`answer` tool" in tool_version[0]["prompt"][0]["content"]


# ------------------------------------------------------------------------ environments
def test_tool_env_reset_and_crop():
    factory = make_environment_factory(dataset_kwargs=DATASET_KWARGS, max_crops=2, **SMALL_BUDGET)
    dataset = build_prompt_dataset(dataset_kwargs=DATASET_KWARGS)
    env, other = factory(), factory()
    assert env.env.images is other.env.images  # one decoded-image cache for every rollout
    assert env.env.dataset is other.env.dataset
    content = env.reset(**dataset[2])  # TRL passes the whole row
    assert env.sample.sample_id == dataset[2]["sample_id"]
    image = content[0]["image"]
    assert content[0]["type"] == "image" and image.size == (112, 112)
    assert content[1] == {"type": "text", "text": "\n(The image is 112x112 pixels.)"}

    result = env.crop(0, 0, 56, 56.0)
    assert [p["type"] for p in result] == ["image", "text"]
    original = env.env.images.get(env.sample.sample_id, env.sample.image)
    expected = crop_to_view(original, (0, 0, 56, 56), budget=ImageBudget(**SMALL_BUDGET))
    assert np.array_equal(np.asarray(result[0]["image"]), np.asarray(expected))
    assert result[1]["text"].startswith("Region (0, 0, 256, 256) of the original")
    assert env.last_info["crop_box"] == (0, 0, 256, 256)

    assert env.crop(10, 10, 20, 20).startswith("Invalid region: box is 10 x 10 view pixels")
    assert env.crop(0, 0, 60, 60) == "No crops left: answer now."
    assert env.crops_used == 2

    # A new rollout starts clean; string and bad arguments are handled without raising.
    env.reset(index=1)
    assert env.crops_used == 0 and env.sample.sample_id == "synthetic-0-1"
    assert env.crop("0", "0", "60", "60")[0]["type"] == "image"
    env.reset(index=1)
    assert env.crop("left", 0, 60, 60).startswith("Invalid region: x1, y1, x2, y2 must be numbers")
    assert env.crop(0, 0, float("inf"), 60).startswith("Invalid region: coordinates must be finite")
    assert env.crops_used == 0
    with pytest.raises(ValueError, match="max_crops"):
        HighResVQAToolEnv(dataset_kwargs=DATASET_KWARGS, protocol="two_turn")


def test_answer_tool_env_owns_the_reward():
    factory = make_environment_factory(HighResVQAAnswerToolEnv, dataset_kwargs=DATASET_KWARGS, **SMALL_BUDGET)
    env = factory()
    env.reset(sample_id="synthetic-0-4")
    assert env.get_reward() == 0.0  # not answered yet
    env.crop(0, 0, 60, 60)
    assert env.answer(env.sample.answer) == "Answer recorded."
    assert env.get_reward() == 1.0 and env.last_info["correct"] is True
    assert env.answer("A") == "You already answered." and env.get_reward() == 1.0
    env.reset(sample_id="synthetic-0-4")
    assert env.get_reward() == 0.0
    wrong = next(l for l in "ABCD" if l != env.sample.answer)
    env.answer(wrong)
    assert env.get_reward() == 0.0 and env.last_info["correct"] is False


@pytest.mark.slow  # imports transformers
def test_tool_schemas_render_for_transformers():
    pytest.importorskip("transformers")
    from transformers.utils import get_json_schema

    env = make_environment_factory(HighResVQAAnswerToolEnv, dataset_kwargs=DATASET_KWARGS)()
    crop = get_json_schema(env.crop)["function"]
    assert crop["name"] == "crop" and list(crop["parameters"]["properties"]) == ["x1", "y1", "x2", "y2"]
    assert crop["parameters"]["properties"]["x1"]["type"] == "number"
    answer = get_json_schema(env.answer)["function"]
    assert answer["parameters"]["properties"]["option"]["type"] == "string"


# ------------------------------------------------------------------ chat template / TRL
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    tiny = pytest.importorskip("mgpo_agents.tiny_model")
    return tiny.build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture()
def processor(tiny_model_dir):
    pytest.importorskip("trl")
    from mgpo_agents.qwen_processor import load_processor

    return load_processor(tiny_model_dir)


@pytest.mark.slow
def test_enable_tool_calling_makes_trl_accept_qwen25vl(processor):
    from trl.chat_template_utils import add_response_schema, is_chat_template_prefix_preserving, supports_tool_calling

    assert not supports_tool_calling(processor)  # Qwen2.5-VL's own template: no tools
    enable_tool_calling(processor)
    assert processor.chat_template == tool_chat_template() == processor.tokenizer.chat_template
    assert supports_tool_calling(processor)
    assert is_chat_template_prefix_preserving(processor)
    add_response_schema(processor)
    tok = processor.tokenizer
    reply = '<tool_call>\n{"name": "crop", "arguments": {"x1": 1, "y1": 2, "x2": 90, "y2": 95}}\n</tool_call><|im_end|>'
    prefix = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)  # what generation continued
    parsed = tok.parse_response(tok.encode(reply, add_special_tokens=False), prefix=prefix)
    assert parsed["tool_calls"][0]["function"] == {"name": "crop", "arguments": {"x1": 1, "y1": 2, "x2": 90, "y2": 95}}
    # A tool result with an image renders Qwen2.5-VL's vision tokens inside the tool response.
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [], "tool_calls": [{"type": "function", "function": {"name": "crop", "arguments": {"x1": 0}}}]},
        {"role": "tool", "name": "crop", "content": [{"type": "image", "image": Image.new("RGB", (56, 56))}, {"type": "text", "text": "Region"}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert "<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>Region\n</tool_response>" in text


def _scripted_generate(model, tokenizer, turns):
    """Replace ``model.generate`` with a script: reply ``turns[k][row % len]`` in the row's k-th turn.

    A random tiny model never emits a well-formed tool call, so the script stands in for
    sampling; everything else (tool execution, images, log-probs, loss, optimizer) is TRL's.
    """
    import torch

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def generate(input_ids, attention_mask=None, **kwargs):
        rows = []
        for i, ids in enumerate(input_ids.tolist()):
            turn = min(tokenizer.decode(ids).count("</tool_response>"), len(turns) - 1)
            options = turns[turn]
            rows.append(tokenizer.encode(options[i % len(options)], add_special_tokens=False) + [im_end])
        width = max(map(len, rows))
        rows = [r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(rows, dtype=input_ids.dtype)], dim=1)

    model.generate = generate


def _train(tiny_model_dir, env_class, reward_funcs, turns, *, max_tool_calling_iterations=2):
    pytest.importorskip("trl")
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from mgpo_agents.qwen_processor import image_token_id, load_model, load_processor

    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    torch.manual_seed(0)
    processor = enable_tool_calling(load_processor(tiny_model_dir))
    model = load_model(tiny_model_dir)
    _scripted_generate(model, processor.tokenizer, turns)
    seen = []  # what every training forward pass received: image features vs image tokens

    def record(module, args, kwargs):
        # TRL runs the inner model (hidden states) and applies lm_head itself, so hook the inner model.
        ids = kwargs.get("input_ids")
        grid = kwargs.get("image_grid_thw")
        seen.append(
            {
                "image_tokens": int((ids == image_token_id(processor)).sum()) if ids is not None else 0,
                "image_features": int(grid.prod(-1).sum()) // 4 if grid is not None else 0,
                "mm_token_type_ids": kwargs.get("mm_token_type_ids") is not None,
            }
        )

    model.model.register_forward_pre_hook(record, with_kwargs=True)
    answer_tool = env_class is HighResVQAAnswerToolEnv
    args = GRPOConfig(
        output_dir=str(tiny_model_dir.parent / "grpo-out"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=512,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        max_tool_calling_iterations=max_tool_calling_iterations,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=build_prompt_dataset(dataset_kwargs=DATASET_KWARGS, answer_tool=answer_tool),
        processing_class=processor,
        environment_factory=make_environment_factory(env_class, dataset_kwargs=DATASET_KWARGS, **SMALL_BUDGET),
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train()
    changed = sum(not torch.equal(before[name], p) for name, p in model.named_parameters())
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return logs, seen, changed, len(before)


CROP_CALL = '<tool_call>\n{"name": "crop", "arguments": {"x1": 0, "y1": 0, "x2": 60, "y2": 60}}\n</tool_call>'


@pytest.mark.slow
def test_grpo_trains_with_crop_tool_images_and_answer_reward(tiny_model_dir):
    # Turn 1: every rollout crops. Turn 2: rollout i of a group answers A, B, C, D: exactly one is right.
    turns = [[CROP_CALL], ["I see it. \\boxed{%s}" % letter for letter in "ABCD"]]
    logs, seen, changed, total = _train(tiny_model_dir, HighResVQAToolEnv, [answer_reward], turns)
    assert len(logs) == 2
    for log in logs:
        assert log["tools/call_frequency"] == 1.0 and log["tools/failure_frequency"] == 0.0
        assert log["rewards/answer_reward/mean"] == 0.25  # one right answer in each group of 4
        assert log["grad_norm"] > 0
    # Training forward passes saw both images of every rollout (the view and the crop),
    # with as many image tokens as image features: TRL did not drop them.
    assert seen and all(s["image_tokens"] == s["image_features"] > 0 and s["mm_token_type_ids"] for s in seen)
    assert any(s["image_features"] == 4 * 2 * 16 for s in seen)  # 4 rollouts x 2 images x 16 tokens (112x112 and 112x112)
    assert changed == total


@pytest.mark.slow
def test_grpo_with_environment_owned_reward(tiny_model_dir):
    answer_calls = ['<tool_call>\n{"name": "answer", "arguments": {"option": "%s"}}\n</tool_call>' % letter for letter in "ABCD"]
    turns = [[CROP_CALL], answer_calls, ["Done."]]
    logs, seen, changed, total = _train(tiny_model_dir, HighResVQAAnswerToolEnv, None, turns, max_tool_calling_iterations=3)
    for log in logs:
        assert log["rewards/HighResVQAAnswerToolEnv/mean"] == 0.25
        assert log["tools/call_frequency"] == 2.0 and log["tools/failure_frequency"] == 0.0
    assert changed == total
