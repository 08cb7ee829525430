"""The FSDP memory plan: printed for the published 3B/7B shapes, checked against measured tiny runs.

1. ``mgpo train --dry-run`` figures (``mgpo_agents.memory_plan``) for Qwen2.5-VL-3B and -7B
   (the public config.json, built on the meta device) on 8 processes, full fine-tuning, ddp and
   fsdp, bf16 as on a GPU; and the 3B LoRA float32 one-process plan beside the measured
   ``results/real_size_cpu.md`` run.
2. The tiny model trained for 2 steps by 1 plain process and by 2 FSDP ranks (``torchrun``,
   gloo): each process counts the bytes it stores of the policy, its gradients (just before each
   AdamW step, the largest), the AdamW state and the reference, and its peak resident memory;
   the plan for the same config is put beside them.

Usage: ``python benchmarks/fsdp_memory.py`` (about 2 minutes on 2 cores); writes
``results/fsdp.md``. ``--worker OUT CONFIG`` is the measuring process the script launches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
MIB = 1024**2


def worker(out: Path, config_path: Path) -> None:
    """Train the config and write what this process held: ``out/rank-R.json``."""
    import torch
    from mgpo_agents.config import MGPOConfig
    from mgpo_agents.sharding import local_bytes
    from mgpo_agents.trainer import MGPOTrainer

    config = MGPOConfig.load(config_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    trainer = MGPOTrainer(config)
    largest_gradients = 0
    step = trainer.optimizer.step

    def counting_step(*args, **kwargs):  # the gradients are whole here, and freed right after
        nonlocal largest_gradients
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        largest_gradients = max(largest_gradients, local_bytes(grads))
        return step(*args, **kwargs)

    trainer.optimizer.step = counting_step
    trainer.train(progress=False)
    moments = [v for state in trainer.optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    reference = list(trainer.reference.parameters()) if trainer.reference is not None else []
    figures = {
        "parameters": local_bytes(trainer.model.parameters()),
        "gradients": largest_gradients,
        "optimizer": local_bytes(moments),
        "reference": local_bytes(reference),
        "rss_before_trainer": before,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    (out / f"rank-{trainer.rank}.json").write_text(json.dumps(figures))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_tiny(work: Path) -> dict:
    """Plans and measurements for the tiny model at 1 process and 2 FSDP ranks."""
    from mgpo_agents.config import preset
    from mgpo_agents.memory_plan import memory_plan
    from mgpo_agents.tiny_model import build_tiny_qwen25vl

    model = build_tiny_qwen25vl(work / "tiny", seed=0)
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    results = {}
    for name, world, distributed in (("1 process", 1, "ddp"), ("2 FSDP ranks", 2, "fsdp")):
        out = work / name.replace(" ", "-")
        out.mkdir()
        config = preset("tiny-cpu", model=str(model), steps=2, prompts_per_step=2, mini_batch_prompts=2, micro_batch_size=4,
                        max_new_tokens=8, eval_dataset="", tensorboard=False, save_every=100, output_dir=str(out / "run"),
                        distributed=distributed)
        config.save(out / "config.json")
        launcher = [sys.executable] if world == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
                                                        "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
        command = [*launcher, str(Path(__file__).resolve()), "--worker", str(out), str(out / "config.json")]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, timeout=900, capture_output=True)
        plan = memory_plan(config, world, model)
        results[name] = {
            "command": " ".join(["torchrun --nproc_per_node 2" if world > 1 else "python", "benchmarks/fsdp_memory.py --worker ..."]),
            "seconds": time.perf_counter() - started,
            "plan": {"parameters": plan.parameters, "gradients": plan.gradients, "optimizer": plan.optimizer, "reference": plan.reference},
            "ranks": [json.loads((out / f"rank-{r}.json").read_text()) for r in range(world)],
        }
    return results


def plan_rows() -> list[tuple[str, ...]]:
    """The --dry-run figures for the published shapes."""
    from mgpo_agents.config import preset
    from mgpo_agents.memory_plan import memory_plan
    from mgpo_agents.tiny_model.sizes import qwen25vl_config

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in ("3b", "7b"):
            folder = Path(tmp) / size
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(qwen25vl_config(size)))
            settings = [("full", "ddp", 8, "auto", 0), ("full", "fsdp", 8, "auto", 0)]
            if size == "3b":
                settings.append(("LoRA 16", "ddp", 1, "float32", 16))
            for tuning, distributed, world, dtype, rank in settings:
                plan = memory_plan(preset("paper", model=str(folder), distributed=distributed, dtype=dtype, lora_rank=rank), world, folder)
                rows.append((size.upper(), tuning, plan.dtype, str(world), distributed, *(f"{b / GIB:.2f}" for b in (
                    plan.parameters, plan.gradients, plan.optimizer, plan.reference, plan.state, plan.gathered_in_pass,
                    plan.gathered_for_rollouts, plan.peak))))
    return rows


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def report(rows: list[tuple[str, ...]], tiny: dict) -> str:
    import torch
    import transformers

    plan_header = ("model", "tuning", "dtype", "processes", "sharding", "parameters", "gradients", "AdamW state", "reference",
                   "state", "+ pass gather", "+ rollout gather", "peak")
    tiny_rows = []
    for name, result in tiny.items():
        for rank, measured in enumerate(result["ranks"]):
            for part in ("parameters", "gradients", "optimizer", "reference"):
                planned = result["plan"][part]
                tiny_rows.append((name, str(rank), part, f"{planned / MIB:.3f}", f"{measured[part] / MIB:.3f}",
                                  "yes" if planned == measured[part] else ("rank 0 is planned" if measured[part] < planned else "NO")))
        peaks = ", ".join(f"rank {r}: {m['peak_rss'] / MIB:.0f} MiB (before the trainer {m['rss_before_trainer'] / MIB:.0f})"
                          for r, m in enumerate(result["ranks"]))
        tiny_rows.append((name, "-", "peak RSS", "-", peaks, "-"))
    one, two = tiny["1 process"]["ranks"][0], tiny["2 FSDP ranks"]["ranks"]
    state = lambda m: sum(m[k] for k in ("parameters", "gradients", "optimizer", "reference"))  # noqa: E731
    return f"""# FSDP memory: the plan and the measurement

`python benchmarks/fsdp_memory.py` on this project's 2-core CPU ({platform.processor() or platform.machine()}),
torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}.

## The plan for the published shapes (`mgpo train --dry-run`)

GiB per process, from the public config.json built on the meta device (no weights loaded);
e.g. `mgpo train --dry-run --preset paper --model DIR --world-size 8 --distributed fsdp`.
dtype `auto` is planned as on a GPU (bfloat16). This trainer keeps the weights and AdamW's two
moments in the run's dtype (no float32 master copy), so full fine-tuning costs 8 bytes a
parameter plus 2 for the reference. "state" is what a process keeps all the time; FSDP also
gathers the root unit and two blocks during a pass, and the whole policy for rollouts; "peak"
adds the larger of the two (an upper bound). Activations and the KV cache are not counted.

{table(plan_header, rows)}

The 3B LoRA float32 row is the configuration of `results/real_size_cpu.md` (world 1, LoRA rank
16), whose measured peak RSS was 21.5 GiB: 14.1 GiB of planned weights and state, the rest
activations, the rollouts' KV cache, the processor and the Python runtime.

## Checked on the tiny model (1 process vs 2 FSDP ranks, gloo)

MiB each process stores after 2 MGPO steps (gradients: the largest just before an AdamW step),
against the plan for the same config and world size.

{table(("run", "rank", "part", "plan (MiB)", "measured (MiB)", "equal"), tiny_rows)}

The sharded state per rank is {state(two[0]) / state(one):.3f} (rank 0) and {state(two[1]) / state(one):.3f} (rank 1)
of the one-process state. Peak RSS is almost all Python, torch and transformers at this size
(the whole model state is {state(one) / MIB:.1f} MiB), so it cannot show the halving (the one
process is higher mostly because it plays both questions of a step, the 2 ranks one each); the
counted bytes can, and they equal the plan.

Not run here: GPU/NCCL. The plan for 8 GPUs is arithmetic on the same rules the tiny runs confirm.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("OUT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tiny = measure_tiny(Path(tmp))
    text = report(plan_rows(), tiny)
    (HERE / "results" / "fsdp.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
