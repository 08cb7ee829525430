"""Qwen2/Qwen2.5(-VL)'s added tokens, in the real tokenizer's id order.

The tokenizer adds them after its base vocabulary in this order, and the model
config looks its token ids (image, vision start/end, eos) up from them.
"""

from __future__ import annotations

__all__ = ["QWEN_SPECIAL_TOKENS"]

# Qwen2/Qwen2.5(-VL) added tokens, in Qwen's id order (151643..151664 in the real
# tokenizer_config.json's added_tokens_decoder). The flag is its "special" value:
# the tool-call/FIM tokens are plain added tokens there, not special ones.
QWEN_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
