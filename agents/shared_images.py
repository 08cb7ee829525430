"""Run the vision tower once per distinct image of a batch.

The G episodes of a GRPO group all show the question's original image, so a
batched forward pass over a group hands Qwen2.5-VL's vision tower G identical
copies of it (in generation, in the reference pass and in the policy pass).
:func:`encode_each_image_once` puts two hooks on the tower: before it runs, the
batch's images are reduced to the distinct ones; after it, every copy gets the
features of its distinct image, by index.

This is exact. The tower encodes images independently (its attention never
crosses from one image to another), so an image's features do not depend on
what else is in the batch; and in a training pass the gradients of the copies
add up in the one computation, which is what backpropagating through G separate
computations would give. Only the floating-point summation order of batched
matrix products can differ, at the level of rounding.

At the published scale (Qwen2.5-VL-7B, the original at up to 1280 visual tokens
= 5120 patches through a 32-block tower) the original's encoding is a sizeable
share of a two-turn episode's forward cost, and a group of 8 pays it once
instead of 8 times. Crops differ between episodes, so they are still encoded
one by one.

Example:
    >>> import torch
    >>> pixels = torch.cat([torch.ones(4, 3), torch.zeros(16, 3), torch.ones(4, 3)])
    >>> grid = torch.tensor([[1, 2, 2], [1, 4, 4], [1, 2, 2]])
    >>> distinct_images(pixels, grid)   # the third image is the first one again
    [0, 1, 0]
"""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["distinct_images", "encode_each_image_once", "vision_tower"]

# Marks a tower that already has the hooks, so installing twice is harmless.
_HOOKED = "_mgpo_encodes_each_image_once"


def distinct_images(pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[int]:
    """For each image of a batch, the index of the first image with the same grid and pixels.

    ``pixel_values`` is the processor's flattened patches of every image, in order,
    ``grid_thw`` the (images, 3) patch grid of each; image ``i`` owns
    ``prod(grid_thw[i])`` consecutive rows.
    """
    counts = grid_thw.prod(-1).tolist()
    chunks = torch.split(pixel_values, counts)
    first: list[int] = []
    seen: list[int] = []  # indices of the distinct images so far
    for i, chunk in enumerate(chunks):
        match = next(
            (j for j in seen if torch.equal(grid_thw[j], grid_thw[i]) and (chunks[j] is chunk or torch.equal(chunks[j], chunk))),
            None,
        )
        if match is None:
            seen.append(i)
            match = i
        first.append(match)
    return first


def vision_tower(model: Any) -> Optional[torch.nn.Module]:
    """The model's vision tower (the module named ``visual`` in Qwen2-VL/Qwen2.5-VL), or None."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "visual":
            return module
    return None


def encode_each_image_once(model: Any) -> bool:
    """Hook ``model``'s vision tower so each forward pass encodes each distinct image once.

    Works through peft and DDP wrappers and inside ``generate`` (the hooks sit on
    the tower module itself). Returns whether a tower was found; installing twice
    does nothing the second time.
    """
    tower = vision_tower(model)
    if tower is None:
        return False
    if getattr(tower, _HOOKED, False):
        return True
    pending: list[Optional[torch.Tensor]] = []  # expansion index of the call in flight (None: nothing shared)
    merge = int(getattr(tower, "spatial_merge_size", 2)) ** 2

    def before(module: torch.nn.Module, args: tuple, kwargs: dict) -> Optional[tuple[tuple, dict]]:
        pixel_values = args[0] if args else kwargs["hidden_states"]
        grid_thw = args[1] if len(args) > 1 else kwargs["grid_thw"]
        first = distinct_images(pixel_values, grid_thw)
        unique = sorted(set(first))
        if len(unique) == len(first):
            pending.append(None)
            return None
        counts = grid_thw.prod(-1).tolist()
        chunks = torch.split(pixel_values, counts)
        # Rows of the distinct images' merged features, then each image's rows in the output.
        tokens = [c // merge for c in counts]
        offsets, start = {}, 0
        for j in unique:
            offsets[j] = start
            start += tokens[j]
        index = torch.cat([torch.arange(offsets[j], offsets[j] + tokens[i]) for i, j in enumerate(first)])
        pending.append(index.to(pixel_values.device))
        rest = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "grid_thw")}
        return (torch.cat([chunks[j] for j in unique]), grid_thw[unique]), rest

    def after(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        index = pending.pop()
        if index is None:
            return None
        if isinstance(output, torch.Tensor):  # towers that return the merged features themselves
            return output.index_select(0, index)
        # Only the merged features are handed on; the patch-level states (window order, distinct
        # images only) have no per-copy meaning, so the new output leaves them out.
        return type(output)(pooler_output=output.pooler_output.index_select(0, index))

    tower.register_forward_pre_hook(before, with_kwargs=True)
    tower.register_forward_hook(after, with_kwargs=True)
    setattr(tower, _HOOKED, True)
    return True
