"""Sharded training with torch's FSDP2 (``fully_shard``), and the process group it needs.

The trainer shards the model itself, on CPU (gloo) and GPU (nccl) alike: accelerate's
FSDP path does not shard on CPU, so ``torchrun`` or ``accelerate launch`` only start the
processes. Each decoder layer and each vision block becomes one FSDP unit (the
classes a transformers model lists in ``_no_split_modules``); the root unit holds the
rest (embeddings, LM head, the vision tower's patch embedding and merger).

Which launches get a process group (:func:`start_process_group`):

* ``WORLD_SIZE`` set by a launcher (``torchrun``, ``accelerate launch --multi_gpu``):
  the group starts, with a timeout; a world of 1 is a valid one-process group.
* no ``WORLD_SIZE`` but ``MASTER_ADDR`` set: a launcher meant to start several
  processes but made no group (``accelerate launch --cpu --num_processes 2``), which
  would train independent copies into one folder: an error, whatever ``--distributed``.
* neither: one plain process. Fine for ``ddp`` (a world of 1); ``fsdp`` asks for a
  group, so it is an error.

Gradients are reduce-scattered after every micro-batch's backward pass (FSDP's default), not once
per mini-batch: skipping the sync would keep every unit's unsharded gradients until the last
micro-batch, a whole model's worth on each process, which is what sharding is for avoiding.

The timeout (``$MGPO_PROCESS_GROUP_TIMEOUT``) bounds start-up and every collective, so a
process that dies or never starts ends the run with an error instead of a hang.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from datetime import timedelta
from typing import Any, Iterator, Optional

import torch
from torch import nn

TIMEOUT_VARIABLE = "MGPO_PROCESS_GROUP_TIMEOUT"  # seconds; how long start-up and each collective may wait
DEFAULT_TIMEOUT_S = 600


class LaunchError(RuntimeError):
    """The processes were launched in a way the asked-for distribution cannot work with."""


def process_group_timeout() -> timedelta:
    """The process group's timeout: ``$MGPO_PROCESS_GROUP_TIMEOUT`` seconds (default 600)."""
    text = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        raise LaunchError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds") from None
    return timedelta(seconds=seconds)


def launched_world_size() -> Optional[int]:
    """The number of processes a launcher started (``WORLD_SIZE``), or None without a launcher."""
    text = os.environ.get("WORLD_SIZE")
    return int(text) if text else None


def start_process_group(distributed: str) -> int:
    """Start (or reuse) the process group the launch asks for; returns the world size. See the module docstring."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    world = launched_world_size()
    if world is None:
        if os.environ.get("MASTER_ADDR"):
            raise LaunchError(
                f"MASTER_ADDR is set ({os.environ['MASTER_ADDR']}:{os.environ.get('MASTER_PORT', '?')}) but WORLD_SIZE is not: "
                "the launcher expected several processes but started them without a process group (as "
                "`accelerate launch --cpu --num_processes N` does), so each would train its own copy into one folder. "
                "Launch with `torchrun --nproc_per_node N $(which mgpo) train ...` or "
                "`accelerate launch --multi_gpu --num_processes N -m mgpo_agents.train_command ...`"
            )
        if distributed == "fsdp":
            raise LaunchError(
                "--distributed fsdp shards the model over a process group, and this process was not started by a launcher "
                "(WORLD_SIZE is unset). Launch with `torchrun --nproc_per_node N $(which mgpo) train ... --distributed fsdp` "
                "(N may be 1), or train in one plain process with --distributed ddp"
            )
        return 1
    timeout = process_group_timeout()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        dist.init_process_group(timeout=timeout)  # gloo for CPU tensors, nccl for CUDA ones
    except Exception as error:  # a timeout, a refused connection, a port in use
        raise LaunchError(
            f"the process group did not start (rank {os.environ.get('RANK', '?')} of {world}, "
            f"MASTER_ADDR={os.environ.get('MASTER_ADDR', '(unset)')}, MASTER_PORT={os.environ.get('MASTER_PORT', '(unset)')}, "
            f"timeout {timeout.total_seconds():.0f} s, ${TIMEOUT_VARIABLE}): {type(error).__name__}: {error}. "
            "Check that every process was started and that the port is free"
        ) from error
    return world


# ---------------------------------------------------------------- sharding
def shard_units(model: nn.Module) -> list[nn.Module]:
    """The blocks that become FSDP units: instances of the classes the model lists in ``_no_split_modules``
    (Qwen2.5-VL: its decoder layers and vision blocks), found through wrappers such as peft's."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    units = [m for m in model.modules() if type(m).__name__ in names]
    if not units:
        raise ValueError(f"{type(model).__name__} lists no blocks to shard (_no_split_modules); FSDP would hold it whole")
    return units


def shard_model(model: nn.Module, *, frozen: bool = False) -> nn.Module:
    """Shard ``model`` in place with ``fully_shard``: each block, then the root (which holds the rest).

    ``fully_shard`` moves each unit to the device of the process group's mesh (the current GPU, or
    the CPU) as it shards it, so a model loaded on the CPU never sits whole on the GPU.

    FSDP keeps the root's weights gathered from a forward pass until its backward pass; a ``frozen``
    model (the reference) has no backward pass, so its root reshards after every forward instead.
    """
    from torch.distributed.fsdp import fully_shard

    # FSDP warns that a view returned by forward loses its pre-backward hook if changed in place;
    # the trainer only reads the logits out of place (mgpo_loss.token_logprobs), so it would warn every pass.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor", category=UserWarning)
    for unit in shard_units(model):
        fully_shard(unit)
    fully_shard(model, reshard_after_forward=True if frozen else None)
    # FSDP marks as root the first unit to run forward. generate() may run the vision blocks before the
    # model's own forward, and rollouts unshard units one by one (gathered), so settle the root now.
    model._get_fsdp_state()._lazy_init()
    return model


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def held_parameters(model: nn.Module) -> tuple[int, int]:
    """(parameters this process stores, parameters of the whole model)."""
    from torch.distributed.tensor import DTensor

    held = total = 0
    for p in model.parameters():
        held += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
        total += p.numel()
    return held, total


def local_bytes(tensors: Any) -> int:
    """Bytes this process stores of ``tensors`` (of a DTensor: its local shard), each storage once."""
    from torch.distributed.tensor import DTensor

    seen: set[int] = set()
    size = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        if local.data_ptr() in seen and local.numel():
            continue
        seen.add(local.data_ptr())
        size += local.numel() * local.element_size()
    return size


def shard_summary(model: nn.Module, rank: int) -> str:
    """E.g. ``FSDP: rank 0 holds 0.9M of 1.7M parameters``."""
    held, total = held_parameters(model)
    return f"FSDP: rank {rank} holds {_millions(held)} of {_millions(total)} parameters"


def _millions(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.1f}M"


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Every unit of a sharded ``model`` all-gathered for the duration (no-op for other models).

    Rollouts run inside: each process generates its own episodes, and their lengths differ, so
    the forward passes of ``generate`` must need no collective. The all-gathers happen here, in
    the same order on every process; the full weights are freed on exit.
    """
    if not is_sharded(model):
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    model.set_reshard_after_forward(False)
    try:
        for unit in units:
            unit.unshard()
        yield
    finally:
        model.set_reshard_after_forward(True)
        model.set_reshard_after_forward(False, recurse=False)  # fully_shard's default for the root
        for unit in units:
            unit.reshard()


def gradient_norm(norm: Any) -> float:
    """A norm from ``clip_grad_norm_`` as a float (under FSDP it is a DTensor whose full value needs a reduction)."""
    from torch.distributed.tensor import DTensor

    return float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
