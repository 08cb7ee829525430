"""Load Qwen2.5-VL processors and models from local directories, without torchvision.

transformers' ``Qwen2_5_VLProcessor`` wants a video processor, and every video
processor needs torchvision. Without it ``Qwen2_5_VLProcessor(...)`` raises and
``AutoProcessor`` fails too. :class:`Qwen2_5_VLImageOnlyProcessor` is the same
processor with no video processor and the PIL image processor; importing this
module registers it with ``AutoProcessor`` for Qwen2.5-VL configs.

:func:`load_processor` and :func:`load_model` read a local directory only (a local
path works where a hub id would; nothing is ever downloaded). They work for the
tiny model that :mod:`mgpo_agents.tiny_model` writes and for the real
Qwen2.5-VL-3B/7B-Instruct directories.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessorPil,
)
from transformers.image_utils import SizeDict

__all__ = [
    "Qwen2_5_VLImageOnlyProcessor",
    "load_processor",
    "load_model",
    "image_token_id",
    "mm_token_type_ids",
]

# Processor classes named in real checkpoints that we can stand in for.
_QWEN_VL_PROCESSOR_NAMES = frozenset({"Qwen2_5_VLProcessor", "Qwen2VLProcessor"})
_QWEN_VL_MODEL_TYPES = frozenset({"qwen2_5_vl", "qwen2_vl"})


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor for images and text only (no video, no torchvision).

    Its sub-processors are ``image_processor`` (a ``Qwen2VLImageProcessorPil``)
    and ``tokenizer``. Everything else (placeholder expansion, chat templates,
    ``mm_token_type_ids``) is inherited from ``Qwen2_5_VLProcessor``.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        # The sub-processor list comes from this signature, so leaving
        # video_processor out of it stops save/load from ever touching one.
        kwargs.pop("video_processor", None)
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=chat_template,
            **kwargs,
        )

    @classmethod
    def _get_arguments_from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, processor_dict: dict | None = None, **kwargs: Any
    ) -> list[Any]:
        """Load the PIL image processor and the tokenizer from a directory.

        AutoImageProcessor would pick the torchvision backend whenever
        torchvision is importable, so the PIL class is named here directly.
        """
        kwargs.pop("subfolder", None)
        image_kwargs = {k: v for k, v in kwargs.items() if k not in ("trust_remote_code",)}
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(pretrained_model_name_or_path, **image_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [image_processor, tokenizer]

    @classmethod
    def _resolve_subprocessors(
        cls, pretrained_model_name_or_path: str | os.PathLike, processor_dict: dict, **kwargs: Any
    ) -> tuple[dict, dict]:
        """transformers >= 5.25 loads sub-processors here, through ``AutoImageProcessor``.

        That would again pick the image class by name and backend, so hand it the ones
        :meth:`_get_arguments_from_pretrained` loads; caller-given ones still win.
        """
        if kwargs.get("image_processor") is None or kwargs.get("tokenizer") is None:
            load_kwargs = {k: v for k, v in kwargs.items() if k not in ("image_processor", "tokenizer", "return_unused_kwargs")}
            loaded = cls._get_arguments_from_pretrained(pretrained_model_name_or_path, **load_kwargs)
            for name, sub_processor in zip(("image_processor", "tokenizer"), loaded):
                if kwargs.get(name) is None:
                    kwargs[name] = sub_processor
        return super()._resolve_subprocessors(pretrained_model_name_or_path, processor_dict, **kwargs)  # type: ignore[misc]


# `AutoProcessor.from_pretrained` on a directory whose processor_config.json names
# this class finds it through this registration (it must be imported first). The
# registration also covers directories with a Qwen2.5-VL config.json and no
# processor class of their own.
AutoProcessor.register(Qwen2_5_VLConfig, Qwen2_5_VLImageOnlyProcessor, exist_ok=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_qwen_vl_dir(path: Path) -> bool:
    """True if a local directory holds a Qwen2-VL/Qwen2.5-VL (or our image-only) processor."""
    names: set[str] = set()
    for fname in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        value = _read_json(path / fname).get("processor_class")
        if isinstance(value, str):
            names.add(value)
    if Qwen2_5_VLImageOnlyProcessor.__name__ in names or names & _QWEN_VL_PROCESSOR_NAMES:
        return True
    return _read_json(path / "config.json").get("model_type") in _QWEN_VL_MODEL_TYPES


def _local_dir(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(
            f"{str(path)!r} is not a local model directory. This project never downloads from a hub: "
            "point it at a directory that holds the model files."
        )
    return p


def load_processor(
    path: str | os.PathLike,
    trust_remote_code: bool = False,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    *,
    chat_template: str | None = None,
) -> Any:
    """Load a processor from a local model directory.

    Qwen2-VL/Qwen2.5-VL directories (real checkpoints name
    ``Qwen2_5_VLProcessor``; ours name :class:`Qwen2_5_VLImageOnlyProcessor`)
    always give a :class:`Qwen2_5_VLImageOnlyProcessor`, with or without
    torchvision, so pixel values never depend on which image backend happens
    to be installed. Other directories go through ``AutoProcessor``.
    ``min_pixels``/``max_pixels`` bound the image area after resizing (Qwen's
    ``size`` shortest/longest edge).
    ``chat_template`` replaces the directory's template on the processor and its
    tokenizer: real checkpoints' templates have no ``{% generation %}`` tags, so
    pass ``mgpo_agents.tiny_model.CHAT_TEMPLATE`` (same text, with the tags) to get
    ``return_assistant_tokens_mask=True`` working.
    """
    p = _local_dir(path)
    image_kwargs: dict[str, Any] = {}
    if min_pixels is not None or max_pixels is not None:
        size: dict[str, int] = {}
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        image_kwargs["size"] = size

    if _is_qwen_vl_dir(p):
        processor = Qwen2_5_VLImageOnlyProcessor.from_pretrained(str(p), local_files_only=True)
    else:
        processor = AutoProcessor.from_pretrained(
            str(p), local_files_only=True, trust_remote_code=trust_remote_code
        )
    if chat_template is not None:
        processor.chat_template = chat_template
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.chat_template = chat_template
    image_processor = getattr(processor, "image_processor", None)
    if image_kwargs and image_processor is not None:
        # Merge rather than replace: a caller may set only one bound.
        merged = dict(getattr(image_processor, "size", None) or {})
        merged.update(image_kwargs["size"])
        image_processor.size = SizeDict(**merged)
    return processor


def load_model(
    path: str | os.PathLike,
    dtype: Any = None,
    device: Any = None,
    trust_remote_code: bool = False,
) -> Any:
    """Load an image-text-to-text model (e.g. Qwen2.5-VL) from a local directory.

    ``dtype`` is a ``torch.dtype``, a name like ``"bfloat16"``, ``"auto"`` (the
    checkpoint's dtype) or None (float32). ``device`` is where the weights go
    (None keeps them on CPU). The model is returned in eval mode.
    """
    import torch

    p = _local_dir(path)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device is not None:
        # device_map places weights as they load, so a 7B never sits in host RAM
        # and on the GPU at the same time.
        kwargs["device_map"] = str(device) if isinstance(device, torch.device) else device
    model = AutoModelForImageTextToText.from_pretrained(str(p), **kwargs)
    model.eval()
    return model


def image_token_id(processor_or_tokenizer: Any) -> int:
    """The id of ``<|image_pad|>`` as this tokenizer encodes it (never hard-coded)."""
    value = getattr(processor_or_tokenizer, "image_token_id", None)
    if isinstance(value, int):
        return value
    tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)
    return int(tokenizer.convert_tokens_to_ids("<|image_pad|>"))


def mm_token_type_ids(input_ids: Any, image_token: int) -> Any:
    """``mm_token_type_ids`` for Qwen2.5-VL forward/generate: 1 at image tokens, else 0.

    transformers 5.x uses it to build the 3-D (M-RoPE) positions; without it
    positions silently fall back to 1-D. Works on tensors and nested lists.
    """
    try:
        import torch

        if isinstance(input_ids, torch.Tensor):
            return (input_ids == image_token).to(torch.long)
    except ImportError:  # pragma: no cover - torch is a train dependency
        pass
    if isinstance(input_ids, (list, tuple)) and input_ids and isinstance(input_ids[0], (list, tuple)):
        return [[1 if t == image_token else 0 for t in row] for row in input_ids]
    return [1 if t == image_token else 0 for t in input_ids]
