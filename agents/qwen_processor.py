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
    "PositionCodedImageProcessor",
    "load_processor",
    "load_model",
    "image_token_id",
    "mm_token_type_ids",
]

# Processor classes named in real checkpoints that we can stand in for.
_QWEN_VL_PROCESSOR_NAMES = frozenset({"Qwen2_5_VLProcessor", "Qwen2VLProcessor"})
_QWEN_VL_MODEL_TYPES = frozenset({"qwen2_5_vl", "qwen2_vl"})


class PositionCodedImageProcessor(Qwen2VLImageProcessorPil):
    """Qwen2-VL's PIL image processor that also writes where each patch lies into its pixels.

    Qwen2.5-VL's vision tower has rotary positions only (relative), and M-RoPE hands an
    image token's row and column the lowest text frequencies, so a *small* model has no
    practical way to say where something is (the project measured this: supervised box
    training of the tiny model stayed at chance). Large ViTs learn absolute positions
    from pretraining; this processor gives a tiny model the same information for free.

    How, without touching the architecture: every image is fed to the model as two
    identical frames (``temporal_patch_size = 2``), flattened per patch as
    ``(channel, frame, y, x)``. The code is added to frame 0 and subtracted from
    frame 1, so the frames' *mean* is still exactly the image and the position
    lives only in their *difference*, which the patch embedding (a linear map over
    both frames) can read. Features: ``sin`` and ``cos`` of ``pi * k * u`` and
    ``pi * k * v`` for ``k = 1..4``, where ``(u, v)`` is the patch centre as a fraction
    of the image's width and height; they occupy the first 16 pixels of channel 0.

    ``position_code`` is the amplitude in normalised pixel units; 0 gives exactly
    the parent class's pixel values.
    """

    def __init__(self, position_code: float = 0.0, position_code_mode: str = "additive", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if position_code_mode not in ("additive", "modulated"):
            raise ValueError(f"position_code_mode must be 'additive' or 'modulated', got {position_code_mode!r}")
        self.position_code = float(position_code)
        self.position_code_mode = position_code_mode

    def patchify(self, image: Any, patch_size: int, merge_size: int, temporal_patch_size: int) -> Any:
        import numpy as np

        patches, grid_h, grid_w = super().patchify(image, patch_size, merge_size, temporal_patch_size)
        if not self.position_code or temporal_patch_size < 2:
            return patches, grid_h, grid_w
        patches = np.array(patches, dtype=np.float32)  # the parent's result may be a read-only broadcast view
        view = patches.reshape(patches.shape[0], -1, temporal_patch_size, patch_size * patch_size)
        if self.position_code_mode == "modulated":
            # Every pixel's value, times one of the patch's zero-mean position features: a uniform
            # background sums to zero over the image, so a mean over tokens keeps only where things differ.
            features = position_code_features(grid_h, grid_w, merge_size, full_period=True) * self.position_code
            pattern = features[:, np.arange(patch_size * patch_size) % features.shape[1]]  # (patches, P*P)
            modulation = view[:, :, 0, :] * pattern[:, None, :]
            view[:, :, 0, :] += modulation
            view[:, :, 1, :] -= modulation
            return patches, grid_h, grid_w
        code = position_code_features(grid_h, grid_w, merge_size) * self.position_code  # (grid_h * grid_w, 16)
        width = min(code.shape[1], patch_size * patch_size)
        view[:, 0, 0, :width] += code[:, :width]
        view[:, 0, 1, :width] -= code[:, :width]
        return patches, grid_h, grid_w


def position_code_features(grid_h: int, grid_w: int, merge_size: int, frequencies: int = 4, full_period: bool = False) -> Any:
    """The per-patch features :class:`PositionCodedImageProcessor` writes, in Qwen's patch order.

    Patches are flattened merge-block by merge-block: ``(block row, block column,
    row in block, column in block)``.

    >>> f = position_code_features(2, 2, 2)
    >>> f.shape, round(float(f[0, 0]), 4), round(float(f[1, 0]), 4)   # sin(pi u) at u = 1/4 and u = 3/4
    ((4, 16), 0.7071, 0.7071)
    """
    import numpy as np

    rows, cols = np.divmod(np.arange(grid_h * grid_w), grid_w)
    order = np.arange(grid_h * grid_w).reshape(grid_h // merge_size, merge_size, grid_w // merge_size, merge_size)
    order = order.transpose(0, 2, 1, 3).reshape(-1)  # Qwen's flattening of (row, column)
    u = (cols[order] + 0.5) / grid_w
    v = (rows[order] + 0.5) / grid_h
    k = np.arange(1, frequencies + 1) * (2 if full_period else 1)  # full periods: each feature sums to 0 over the grid
    features = [np.sin(np.pi * np.outer(u, k)), np.cos(np.pi * np.outer(u, k)), np.sin(np.pi * np.outer(v, k)), np.cos(np.pi * np.outer(v, k))]
    return np.concatenate(features, axis=1).astype(np.float32)


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
        image_class = PositionCodedImageProcessor if _image_settings(Path(pretrained_model_name_or_path)).get("position_code") else Qwen2VLImageProcessorPil
        image_processor = image_class.from_pretrained(pretrained_model_name_or_path, **image_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return [image_processor, tokenizer]

    @classmethod
    def _resolve_subprocessors(
        cls, pretrained_model_name_or_path: str | os.PathLike, processor_dict: dict, **kwargs: Any
    ) -> tuple[dict, dict]:
        """transformers >= 5.25 loads sub-processors here, through ``AutoImageProcessor``.

        That would again pick the image class by name and backend (and it does not
        know :class:`PositionCodedImageProcessor`), so hand it the ones
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


def _image_settings(path: Path) -> dict[str, Any]:
    """The image processor's saved settings: ``preprocessor_config.json``, or, where only the
    processor was saved (trainer checkpoints), the ``image_processor`` part of ``processor_config.json``."""
    if (path / "preprocessor_config.json").exists():
        return _read_json(path / "preprocessor_config.json")
    nested = _read_json(path / "processor_config.json").get("image_processor")
    return nested if isinstance(nested, dict) else {}


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
