"""Qwen2.5-VL's chat template and ours, read from the ``.jinja`` files beside this module.

``qwen25vl_chat_template.jinja`` (:data:`QWEN25VL_CHAT_TEMPLATE`) is
Qwen2.5-VL-*-Instruct's template as published in its chat_template.json, kept
verbatim so tests can check that :data:`CHAT_TEMPLATE` renders the same text.

``chat_template.jinja`` (:data:`CHAT_TEMPLATE`) renders that same text, but marks
each assistant turn's content + ``<|im_end|>`` with ``{% generation %}`` so that
``apply_chat_template(..., return_assistant_tokens_mask=True)`` works. The newline
after ``{% endgeneration %}`` is an expression, ``{{ '\\n' }}``: HF renders with
trim_blocks=True, which would eat a literal newline right after the block tag. The
file is the chat_template.jinja that every tiny model folder carries.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHAT_TEMPLATE", "QWEN25VL_CHAT_TEMPLATE"]


def _read(name: str) -> str:
    """The template in the file ``name`` beside this module.

    Without the file's final newline, so an editor that adds or drops one changes
    no template (neither ends in a newline). A path beside ``__file__`` rather than
    importlib.resources, which would add ~15 ms to importing this package.
    """
    return Path(__file__).with_name(name).read_text(encoding="utf-8").rstrip("\n")


QWEN25VL_CHAT_TEMPLATE = _read("qwen25vl_chat_template.jinja")
CHAT_TEMPLATE = _read("chat_template.jinja")
