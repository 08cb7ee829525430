"""The Qwen2.5-VL shapes: the real 3B/7B configs, the image settings, and the M-RoPE split.

:func:`qwen25vl_config` gives the public config.json of the real checkpoints (for
benchmarks that build a full-size model with random weights);
:data:`QWEN25VL_IMAGE_SETTINGS` and :func:`mrope_section_for` are what the tiny
model shares with them.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["QWEN25VL_IMAGE_SETTINGS", "mrope_section_for", "qwen25vl_config"]

# Qwen2.5-VL-*-Instruct's preprocessor_config.json values (min/max_pixels become
# Qwen2VLImageProcessor's size shortest_edge/longest_edge).
QWEN25VL_IMAGE_SETTINGS: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}

# Public config.json values of Qwen/Qwen2.5-VL-3B-Instruct and
# Qwen/Qwen2.5-VL-7B-Instruct (model cards' config.json on the Hugging Face hub,
# as written by transformers 4.41.2; token ids are the real tokenizer's).
_QWEN25VL_COMMON: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
}
_QWEN25VL_VISION_COMMON: dict[str, Any] = {
    "depth": 32,
    "hidden_act": "silu",
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "temporal_patch_size": 2,
}
_QWEN25VL_SIZES: dict[str, dict[str, Any]] = {
    "3b": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "max_window_layers": 70,
        "num_attention_heads": 16,
        "num_hidden_layers": 36,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "vocab_size": 151936,
        "vision_config": {"out_hidden_size": 2048},
    },
    "7b": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "max_window_layers": 28,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
        "vocab_size": 152064,
        "vision_config": {"out_hidden_size": 3584},
    },
}


def qwen25vl_config(size: str) -> dict[str, Any]:
    """The public config.json of Qwen2.5-VL-3B-Instruct or -7B-Instruct, as a dict.

    ``size`` is "3b" or "7b" (case and a trailing "-instruct" are ignored).
    Build it with ``Qwen2_5_VLConfig(**qwen25vl_config("7b"))``.
    """
    key = size.strip().lower().removesuffix("-instruct").removeprefix("qwen2.5-vl-")
    if key not in _QWEN25VL_SIZES:
        raise ValueError(f"unknown Qwen2.5-VL size {size!r}; expected one of {sorted(_QWEN25VL_SIZES)}")
    spec = copy.deepcopy(_QWEN25VL_SIZES[key])
    vision = {**copy.deepcopy(_QWEN25VL_VISION_COMMON), **spec.pop("vision_config")}
    return {**copy.deepcopy(_QWEN25VL_COMMON), **spec, "vision_config": vision}


def mrope_section_for(head_dim: int) -> list[int]:
    """M-RoPE (temporal, height, width) split of head_dim/2, in Qwen's 16:24:24 proportion."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even, got {head_dim}")
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]
