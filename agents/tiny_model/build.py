"""Write the tiny Qwen2.5-VL model folder: config, random weights, tokenizer and processor.

The folder has a real checkpoint's files and config layout, so it loads through the
same code as the 3B/7B.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Sequence

from .chat_templates import CHAT_TEMPLATE
from .sizes import QWEN25VL_IMAGE_SETTINGS, mrope_section_for
from .special_tokens import QWEN_SPECIAL_TOKENS
from .tokenizer import build_tokenizer

__all__ = ["build_tiny_qwen25vl"]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def build_tiny_qwen25vl(
    output_dir: str | Path,
    *,
    seed: int = 0,
    vocab: Literal["bpe", "qwen"] = "bpe",
    vocab_size: int = 2048,
    text_hidden: int = 128,
    text_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    text_intermediate: int | None = None,
    vision_depth: int = 2,
    vision_hidden: int = 64,
    vision_heads: int = 4,
    vision_intermediate: int | None = None,
    tie_word_embeddings: bool = True,
    rope_theta: float = 1_000_000.0,
    dtype: str = "float32",
    corpus: Sequence[str] | None = None,
) -> Path:
    """Write a complete tiny Qwen2.5-VL model directory and return its path.

    Files: config.json, generation_config.json, model.safetensors (random
    weights from ``seed``), tokenizer (see :func:`build_tokenizer`),
    processor_config.json + preprocessor_config.json (Qwen2.5-VL's image
    settings) and chat_template.jinja. The config's token ids are looked up from
    the tokenizer. The model's vocab is ``vocab_size`` or, if the tokenizer is
    larger (``vocab="qwen"``), the tokenizer's size rounded up to 64.

    ``rope_theta`` is the text model's rotary base (Qwen's 1e6 by default). M-RoPE
    gives an image token's row and column only the *lowest* rotary frequencies
    (``mrope_section``: time first, then height, then width), so with a small head
    and a base of 1e6 the width rotations differ by about 1e-3 radians across a
    whole image: a tiny model cannot tell where a token sits. A small base (e.g. 4)
    gives every section frequencies that turn visibly over a few tokens.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    from ..qwen_processor import Qwen2_5_VLImageOnlyProcessor

    if text_hidden % heads:
        raise ValueError(f"text_hidden ({text_hidden}) must be divisible by heads ({heads})")
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be divisible by kv_heads ({kv_heads})")
    if vision_hidden % vision_heads:
        raise ValueError(f"vision_hidden ({vision_hidden}) must be divisible by vision_heads ({vision_heads})")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(vocab, vocab_size=vocab_size, seed=seed, corpus=corpus)
    ids = {c: tokenizer.convert_tokens_to_ids(c) for c, _ in QWEN_SPECIAL_TOKENS}
    model_vocab = vocab_size if len(tokenizer) <= vocab_size else _round_up(len(tokenizer), 64)

    head_dim = text_hidden // heads
    # Same layout as the real config.json (flat text fields + vision_config), so
    # the tiny model goes through the same config conversion as the 3B/7B.
    flat: dict[str, Any] = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": text_hidden,
        "initializer_range": 0.02,
        "intermediate_size": text_intermediate or 2 * text_hidden,
        "max_position_embeddings": 32768,
        "max_window_layers": text_layers,
        "num_attention_heads": heads,
        "num_hidden_layers": text_layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-06,
        "rope_theta": float(rope_theta),
        "sliding_window": 32768,
        "tie_word_embeddings": tie_word_embeddings,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": model_vocab,
        # mrope_section must sum to head_dim / 2 (t, h, w rotary frequencies).
        "rope_scaling": {"type": "mrope", "mrope_section": mrope_section_for(head_dim)},
        "vision_config": {
            "depth": vision_depth,
            "hidden_act": "silu",
            "hidden_size": vision_hidden,
            "intermediate_size": vision_intermediate or 2 * vision_hidden,
            "num_heads": vision_heads,
            "in_chans": 3,
            "out_hidden_size": text_hidden,
            "patch_size": QWEN25VL_IMAGE_SETTINGS["patch_size"],
            "spatial_merge_size": QWEN25VL_IMAGE_SETTINGS["merge_size"],
            "spatial_patch_size": QWEN25VL_IMAGE_SETTINGS["patch_size"],
            "window_size": 112,
            # Last block uses full attention, the others windowed, as in the real model.
            "fullatt_block_indexes": [vision_depth - 1],
            "tokens_per_second": 2,
            "temporal_patch_size": QWEN25VL_IMAGE_SETTINGS["temporal_patch_size"],
        },
    }
    config = Qwen2_5_VLConfig(**flat)

    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch_dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
    )
    model.save_pretrained(out, safe_serialization=True)

    image_processor = Qwen2VLImageProcessorPil(**QWEN25VL_IMAGE_SETTINGS)
    processor = Qwen2_5_VLImageOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(out)
    # Real checkpoints keep the image settings in preprocessor_config.json; write it
    # too so older readers (and Qwen2VLImageProcessorPil.from_pretrained) find them.
    image_processor.save_pretrained(out)
    _set_processor_class(out / "preprocessor_config.json", type(processor).__name__)
    return out


def _set_processor_class(path: Path, name: str) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["processor_class"] = name
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
