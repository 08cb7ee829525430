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

The hooks live on the tower module, so every user of the model (``generate``,
the trainer's passes, peft and DDP wrappers around it) gets them, and a
``copy.deepcopy`` of a hooked model is hooked too. ``encode_each_image_once(model,
False)`` takes them off again.

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

__all__ = ["distinct_images", "encode_each_image_once", "encodes_each_image_once", "vision_tower"]

# Where the pre-hook leaves the expansion index of the call in flight, on the tower itself
# (None: nothing shared). One slot, overwritten by every call: a call that raised inside
# the tower leaves nothing behind that a later call could pick up.
_PENDING = "_mgpo_shared_image_index"


def distinct_images(pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[int]:
    """For each image of a batch, the index of the first image with the same grid and pixels.

    ``pixel_values`` is the processor's flattened patches of every image, in order,
    ``grid_thw`` the (images, 3) patch grid of each; image ``i`` owns
    ``prod(grid_thw[i])`` consecutive rows. Only images with equal grids are compared.
    """
    return _first_equal(*_split(pixel_values, grid_thw))


def _split(pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> tuple[list[tuple[int, ...]], tuple[torch.Tensor, ...]]:
    """Each image's grid and its own rows of ``pixel_values``."""
    grids = [tuple(g) for g in grid_thw.tolist()]
    return grids, torch.split(pixel_values, [t * h * w for t, h, w in grids])


def _first_equal(grids: list[tuple[int, ...]], chunks: tuple[torch.Tensor, ...]) -> list[int]:
    """:func:`distinct_images` on images already split (the pre-hook needs the split itself too)."""
    first: list[int] = []
    seen: dict[tuple[int, ...], list[int]] = {}  # grid -> the distinct images with it so far
    for i, (grid, chunk) in enumerate(zip(grids, chunks)):
        candidates = seen.setdefault(grid, [])
        match = next((j for j in candidates if torch.equal(chunks[j], chunk)), None)
        if match is None:
            candidates.append(i)
            match = i
        first.append(match)
    return first


def vision_tower(model: Any) -> Optional[torch.nn.Module]:
    """The model's vision tower (the module named ``visual`` in Qwen2-VL/Qwen2.5-VL), or None."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "visual":
            return module
    return None


def _before(module: torch.nn.Module, args: tuple, kwargs: dict) -> Optional[tuple[tuple, dict]]:
    """Pre-hook: hand the tower the distinct images only, and remember how to expand its output."""
    module.__dict__[_PENDING] = None
    if len(args) > 2 or any(isinstance(v, torch.Tensor) for k, v in kwargs.items() if k not in ("hidden_states", "grid_thw")):
        return None  # precomputed per-image inputs (sequence lengths, positions) would not match a reduced batch
    pixel_values = args[0] if args else kwargs["hidden_states"]
    grid_thw = args[1] if len(args) > 1 else kwargs["grid_thw"]
    grids, chunks = _split(pixel_values, grid_thw)
    first = _first_equal(grids, chunks)
    unique = sorted(set(first))
    if len(unique) == len(first):
        return None
    merge = int(getattr(module, "spatial_merge_size", 2)) ** 2
    tokens = [len(chunk) // merge for chunk in chunks]  # merged feature rows of each image
    offsets, start = {}, 0
    for j in unique:
        offsets[j] = start
        start += tokens[j]
    index = torch.cat([torch.arange(offsets[j], offsets[j] + tokens[i]) for i, j in enumerate(first)])
    module.__dict__[_PENDING] = index.to(pixel_values.device)
    rest = {k: v for k, v in kwargs.items() if k not in ("hidden_states", "grid_thw")}
    return (torch.cat([chunks[j] for j in unique]), grid_thw[unique]), rest


def _after(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Post-hook: every image, copies included, gets its distinct image's merged features."""
    index = module.__dict__.get(_PENDING)
    module.__dict__[_PENDING] = None
    if index is None:
        return None
    if isinstance(output, torch.Tensor):  # towers that return the merged features themselves
        return output.index_select(0, index)
    if getattr(output, "pooler_output", None) is None:
        raise TypeError(f"the vision tower returned {type(output).__name__} without merged features (pooler_output); "
                        "turn encode_images_once off for this model")
    # Only the merged features are handed on; the patch-level states (window order, distinct
    # images only) have no per-copy meaning, so the new output leaves them out.
    return type(output)(pooler_output=output.pooler_output.index_select(0, index))


def _our_hook_ids(tower: torch.nn.Module) -> tuple[list[int], list[int]]:
    pre = [k for k, hook in tower._forward_pre_hooks.items() if hook is _before]
    post = [k for k, hook in tower._forward_hooks.items() if hook is _after]
    return pre, post


def encodes_each_image_once(model: Any) -> bool:
    """Whether ``model``'s vision tower carries the hooks of :func:`encode_each_image_once`."""
    tower = vision_tower(model)
    return tower is not None and bool(_our_hook_ids(tower)[0])


def encode_each_image_once(model: Any, enabled: bool = True) -> bool:
    """Hook ``model``'s vision tower so each forward pass encodes each distinct image once
    (``enabled=False``: take the hooks off, so every copy is encoded).

    Works through peft and DDP wrappers and inside ``generate`` (the hooks sit on the
    tower module itself). Returns whether a tower was found; installing twice does
    nothing the second time.
    """
    tower = vision_tower(model)
    if tower is None:
        return False
    pre, post = _our_hook_ids(tower)
    if enabled and not pre:
        tower.register_forward_pre_hook(_before, with_kwargs=True)
        tower.register_forward_hook(_after, with_kwargs=True)
    elif not enabled:
        # What RemovableHandle.remove() does, by id: a deepcopy of a hooked model has the
        # hooks in its dicts but no handle of ours.
        for key in pre:
            del tower._forward_pre_hooks[key]
            tower._forward_pre_hooks_with_kwargs.pop(key, None)
        for key in post:
            del tower._forward_hooks[key]
            tower._forward_hooks_with_kwargs.pop(key, None)
            tower._forward_hooks_always_called.pop(key, None)
        tower.__dict__.pop(_PENDING, None)
    return True
