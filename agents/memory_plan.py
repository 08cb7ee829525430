"""How much memory each process needs for a run's model state, before any weight is loaded.

``mgpo train --dry-run --model DIR --world-size 8 --distributed fsdp`` builds the model of
DIR's ``config.json`` on the meta device (shapes only), applies the run's LoRA settings the way
the trainer does, and counts what this trainer keeps on each process:

* parameters: the policy's weights, in the run's dtype (LoRA adapters as peft makes them);
* gradients: one per trainable weight, in its dtype;
* optimizer state: AdamW's two moments per trainable weight, in its dtype (plus its step count);
* reference model: the frozen copy of the KL term (none with LoRA, where the reference is the
  base model with adapters off, or with ``kl_coef`` 0).

Under ``ddp`` every process holds all of it. Under ``fsdp`` each holds its shard: ``fully_shard``
splits every tensor's first dimension into ``world`` chunks (rank 0's is the largest, and that is
what is counted). FSDP also gathers weights for a while: the root unit plus two blocks during a
training pass (FSDP2 prefetches the next block), and the whole policy during rollouts
(:func:`~mgpo_agents.sharding.gathered`). Activations, the KV cache and the allocator's slack come
on top and depend on the batch, so they are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from .config import MGPOConfig

GIB = 1024**3
ADAMW_MOMENTS = 2


@dataclass
class MemoryPlan:
    """Bytes per process (the largest share, rank 0's) of each part of the model state."""

    model: str
    architecture: str
    parameters_total: int  # counts, tied weights once
    parameters_trainable: int
    world_size: int
    distributed: str
    dtype: str
    lora_rank: int
    parameters: int  # bytes from here on
    gradients: int
    optimizer: int
    reference: int
    gathered_in_pass: int  # FSDP: weights all-gathered at once during a forward/backward pass
    gathered_for_rollouts: int  # FSDP: the whole policy, gathered for generation

    @property
    def state(self) -> int:
        """What a process keeps all the time: parameters, gradients, optimizer state and reference."""
        return self.parameters + self.gradients + self.optimizer + self.reference

    @property
    def peak(self) -> int:
        """The state plus the most FSDP gathers at once (an upper bound: a process's own shard counts twice)."""
        return self.state + max(self.gathered_in_pass, self.gathered_for_rollouts)

    def render(self) -> str:
        """The plan as a few aligned lines."""
        tuning = f"LoRA rank {self.lora_rank}" if self.lora_rank > 0 else "full fine-tuning"
        how = "sharded with fully_shard" if self.distributed == "fsdp" else "a whole copy on every process"
        lines = [
            f"memory plan for {self.model} ({self.architecture}, built on the meta device: no weights loaded)",
            f"{_count(self.parameters_total)} parameters, {_count(self.parameters_trainable)} trainable ({tuning}), {self.dtype}",
            f"{self.world_size} process{'es' if self.world_size != 1 else ''}, {self.distributed} ({how}); per process:",
            f"  parameters        {_gib(self.parameters)}",
            f"  gradients         {_gib(self.gradients)}",
            f"  optimizer state   {_gib(self.optimizer)}   (AdamW: {ADAMW_MOMENTS} moments a trainable weight)",
            f"  reference model   {_gib(self.reference)}",
            f"  state in all      {_gib(self.state)}",
        ]
        if self.distributed == "fsdp":
            lines += [
                f"  + gathered in a training pass   {_gib(self.gathered_in_pass)}   (root unit + 2 blocks)",
                f"  + gathered for rollouts         {_gib(self.gathered_for_rollouts)}   (the whole policy)",
            ]
        lines.append(f"  peak              {_gib(self.peak)}   (before activations and KV cache)")
        return "\n".join(lines)


def _gib(size: int) -> str:
    return f"{size / GIB:8.2f} GiB"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def shard_bytes(tensor: torch.Tensor, world: int) -> int:
    """Bytes of rank 0's shard of ``tensor`` when its first dimension is split into ``world`` chunks (as ``torch.chunk``)."""
    if tensor.dim() == 0:
        return tensor.element_size()
    rows = tensor.shape[0]
    return min(rows, math.ceil(rows / world)) * (tensor.numel() // max(rows, 1)) * tensor.element_size()


def _unique_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    return list(module.parameters())  # tied weights once


def _bytes(parameters: Iterable[torch.Tensor], world: int) -> int:
    return sum(shard_bytes(p, world) for p in parameters)


def plan_dtype(config: MGPOConfig) -> torch.dtype:
    """The run's dtype; ``auto`` is planned as on a GPU (bfloat16)."""
    return {"auto": torch.bfloat16, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]


def meta_model(path: Path, config: MGPOConfig) -> Any:
    """The model of ``path/config.json`` on the meta device, in the run's dtype, with the run's LoRA adapters."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from .trainer import add_lora_adapters

    model_config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=config.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(model_config, dtype=plan_dtype(config), trust_remote_code=config.trust_remote_code)
        return add_lora_adapters(model, config)


def memory_plan(config: MGPOConfig, world_size: int, path: Path) -> MemoryPlan:
    """Per-process memory of the model state of ``config`` trained by ``world_size`` processes."""
    from .sharding import shard_units

    if world_size < 1:
        raise ValueError(f"world_size={world_size}; must be >= 1")
    model = meta_model(path, config)
    world = world_size if config.distributed == "fsdp" else 1  # the divisor of each tensor
    parameters = _unique_parameters(model)
    trainable = [p for p in parameters if p.requires_grad]
    moments = sum(ADAMW_MOMENTS * shard_bytes(p, world) + 4 for p in trainable)  # + a float32 step count each
    has_reference = config.lora_rank <= 0 and config.kl_coef > 0
    gathered_in_pass = gathered_for_rollouts = 0
    if config.distributed == "fsdp":
        blocks = shard_units(model)
        in_blocks = {id(p) for block in blocks for p in block.parameters()}
        root = sum(p.numel() * p.element_size() for p in parameters if id(p) not in in_blocks)
        largest = sorted((sum(p.numel() * p.element_size() for p in b.parameters()) for b in blocks), reverse=True)
        gathered_in_pass = root + sum(largest[:2])
        gathered_for_rollouts = sum(p.numel() * p.element_size() for p in parameters)
    return MemoryPlan(
        model=str(path),
        architecture=type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__,
        parameters_total=sum(p.numel() for p in parameters),
        parameters_trainable=sum(p.numel() for p in trainable),
        world_size=world_size,
        distributed=config.distributed,
        dtype=str(plan_dtype(config)).removeprefix("torch."),
        lora_rank=config.lora_rank,
        parameters=_bytes(parameters, world),
        gradients=_bytes(trainable, world),
        optimizer=moments,
        reference=_bytes(parameters, world) if has_reference else 0,
        gathered_in_pass=gathered_in_pass,
        gathered_for_rollouts=gathered_for_rollouts,
    )

