"""The miniature's processor variant: Qwen2-VL's PIL image processor that also writes each patch's position.

Probes of the miniature tried it (``benchmarks/results/emergence_probes.md``); the
committed checkpoint does not use it (``POSITION_CODE = 0``). It lives here, beside
the experiment, because no general feature of the library needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import Qwen2VLImageProcessorPil

from mgpo_agents.qwen_processor import load_processor


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


def load_task_processor(path: str | Path) -> Any:
    """The library's processor for ``path``, with this image processor where the folder asks for a position code."""
    processor = load_processor(path)
    if image_settings(Path(path)).get("position_code"):
        processor.image_processor = PositionCodedImageProcessor.from_pretrained(path)
    return processor


def image_settings(path: Path) -> dict[str, Any]:
    """The image processor's saved settings: ``preprocessor_config.json``, or, where only the
    processor was saved (trainer checkpoints), the ``image_processor`` part of ``processor_config.json``."""
    for name, key in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        data = data.get(key) if key and isinstance(data, dict) else data
        return data if isinstance(data, dict) else {}
    return {}
