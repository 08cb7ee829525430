"""What a training checkpoint holds besides the model folder, in formats that load without running code.

A checkpoint is written in one layout whatever the number of processes and the sharding,
so a run saved by 2 FSDP processes resumes in 2 processes, in 1, or under DDP:

* the model as full (unsharded) weights, gathered through
  ``torch.distributed.checkpoint.state_dict`` (a model folder ``from_pretrained`` opens);
* ``optimizer.pt``: AdamW's state keyed by parameter name (not by position), full tensors;
* ``rng.pt``: the Python, NumPy and torch generator states as tensors, ints and tuples.

Both ``.pt`` files hold only tensors and plain Python values, so they load with
``torch.load(..., weights_only=True)``: a checkpoint from elsewhere cannot unpickle objects.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .sharding import is_sharded

# Gathered to full tensors on the CPU, on the main process only (the others get empty dicts).
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)


def _plain(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper (``torch.distributed.checkpoint`` reads its param groups)."""
    return getattr(optimizer, "optimizer", optimizer)


def _load_options(model: Any, strict: bool = True) -> StateDictOptions:
    """Full state dicts scatter into a sharded model; an unsharded one (plain or DDP) takes them as they are."""
    return StateDictOptions(full_state_dict=is_sharded(model), strict=strict)


def full_model_state(model: Any) -> dict[str, torch.Tensor]:
    """The model's full weights, keyed as ``model.state_dict()`` of the unwrapped module. Every process must call."""
    return get_model_state_dict(model, options=_GATHER)


def full_optimizer_state(model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state keyed by parameter name (independent of sharding). Every process must call.

    Before the first applied update the optimizer has no state, and ``torch.distributed.checkpoint``
    would create one (a zero-gradient step: AdamW's step count 1), so saving would change how the
    run goes on. That state is removed again, and the checkpoint says "no state yet".
    """
    plain = _plain(optimizer)
    fresh = not plain.state
    state = get_optimizer_state_dict(model, plain, options=_GATHER)
    if fresh:
        plain.state.clear()
        state["state"] = {}
    return state


def load_model_state(model: Any, state: dict[str, torch.Tensor], *, strict: bool = True) -> None:
    """Load full weights into ``model`` (each process keeps its shard). Every process must call."""
    set_model_state_dict(model, state, options=_load_options(model, strict))


def adapter_module_state(model: Any, adapter: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A saved LoRA adapter (``adapter_model.safetensors`` keys) keyed as the module's own state dict.

    peft names saved weights by its own rule (the adapter name taken out); the rule is applied to
    the module's keys through peft's ``get_peft_model_state_dict`` and inverted, so the adapter can
    load like any full state dict, into a sharded model too.
    """
    from peft import get_peft_model_state_dict

    module = getattr(model, "module", model)  # DDP
    keys = list(module.state_dict().keys())
    saved_names = get_peft_model_state_dict(module, state_dict={key: torch.tensor(i) for i, key in enumerate(keys)})
    module_key = {name: keys[int(index)] for name, index in saved_names.items()}
    missing = sorted(set(adapter) - set(module_key))
    if missing:
        raise ValueError(f"the saved adapter has weights this model has no place for: {missing[:5]}")
    return {module_key[name]: tensor for name, tensor in adapter.items()}


def load_optimizer_state(model: Any, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Load ``optimizer.pt`` (name-keyed; or, from older checkpoints, position-keyed) without unpickling objects."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    plain = _plain(optimizer)
    if all(isinstance(key, int) for key in state["state"]):  # written by optimizer.state_dict() before sharding existed
        if is_sharded(model):
            raise ValueError(f"{path} holds an unsharded optimizer's state by position; resume it without --distributed fsdp")
        plain.load_state_dict(state)
        return
    set_optimizer_state_dict(model, plain, state, options=_load_options(model))
    if not state["state"]:  # saved before the first update: keep it so (loading creates a zero-gradient state)
        plain.state.clear()


def rng_state() -> dict[str, Any]:
    """Every generator's state, as tensors and plain values (``torch.load(weights_only=True)`` reads it back)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "gauss": gauss},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    if isinstance(numpy, dict):
        np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["gauss"]))
    else:  # an older rng.pt: NumPy's own tuple (read through the NumPy allow-list of load_rng_state)
        np.random.set_state(numpy)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_rng_state(path: Path) -> dict[str, Any]:
    """Read ``rng.pt``; older files hold a NumPy array, allowed by name (NumPy's array types only)."""
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), np._core.multiarray._reconstruct]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True)
