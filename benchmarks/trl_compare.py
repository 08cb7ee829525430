"""Training throughput: our MGPOTrainer (single-turn GRPO) vs TRL's GRPOTrainer, equal settings.

Both sides train the same tiny random-weight Qwen2.5-VL (one directory, built once)
on the same single-turn prompts of the synthetic task (system + question with
options + one image fitted to the same pixel budget, so both see the same image
size and the same number of visual tokens), with:

* group size 8, 2 prompts per step (16 completions), one optimiser step per batch
  (ours: mini_batch_prompts = prompts_per_step, ppo_epochs 1; TRL: one device batch of
  16, gradient_accumulation_steps 1, num_iterations 1);
* at most 32 new tokens, temperature 1, top_p 1; the stop tokens (and the image token)
  are suppressed on both sides so every completion is exactly 32 tokens long;
* KL to a frozen reference with coefficient 0.01 (ours kl_coef, TRL beta), float32,
  learning rate 1e-4, gradient clipping 1.0, AdamW, 1 torch thread, TRL without vLLM;
* reward: ``mgpo_env.grading.answer_reward`` (TRL) / the environment's own grading (ours,
  the same function underneath).

A third side is ours with ``encode_images_once=False`` (the vision tower encodes every
copy of a group's image), to show that change's share in the same run.

Each side runs in its own subprocess (so neither sees the other's memory or threads),
one after the other (``--rounds 2`` runs the three sides in turn twice): one warm-up step,
then ``--steps`` timed steps. Per step: wall time (ours: ``train_step()`` end to end;
TRL: from one ``on_step_end`` callback to the next, i.e. data loading, generation,
reward, reference and old log-probs, loss, backward, optimiser step and logging),
generated tokens per second and total (prompt + completion) tokens per second.

Usage:
    python benchmarks/trl_compare.py [--steps K] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mgpo_agents.config import preset

RESULTS = Path(__file__).resolve().parent / "results"
# Ours trains with the tiny-cpu preset's settings (G = 8, 2 prompts a step in one update, lr 1e-4, KL 0.01,
# float32, 1 torch thread), TRL with the same numbers; both on a smaller task and image budget than the preset's.
TINY = preset("tiny-cpu")
DATASET_KWARGS = {"num_samples": 32, "canvas_size": 1024, "target_size": 64, "clutter": 10}
MIN_PIXELS = 16 * 28 * 28
MAX_PIXELS = 36 * 28 * 28
GROUP = TINY.group_size
PROMPTS = TINY.prompts_per_step
MAX_NEW = 32
SIDES = ("ours", "ours-every-copy", "trl")
KL = TINY.kl_coef
LR = TINY.learning_rate


def _stop_ids(processor, model) -> list[int]:
    from mgpo_agents.trajectory import ConversationTokenizer

    stop = model.generation_config.eos_token_id
    ids = set(stop if isinstance(stop, list) else [stop] if stop is not None else [])
    ids.add(ConversationTokenizer(processor).end_of_turn_id)
    return sorted(ids)


# --------------------------------------------------------------------------- ours
def run_ours(model_dir: str, steps: int, encode_images_once: bool = True) -> dict:
    import torch
    from transformers import SuppressTokensLogitsProcessor

    torch.set_num_threads(1)
    from mgpo_agents.qwen_processor import image_token_id
    from mgpo_agents.trainer import MGPOTrainer

    work = Path(tempfile.mkdtemp(prefix="trl-compare-ours-"))
    config = preset(
        "tiny-cpu",
        model=model_dir,
        dataset_kwargs=DATASET_KWARGS,
        protocol="single_turn",
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        max_new_tokens=MAX_NEW,
        entropy_coef=0.0,  # TRL's entropy_coef defaults to 0 (entropies are still computed on both sides)
        tensorboard=False,
        steps=steps + 1,
        save_every=10_000,
        output_dir=str(work / "run"),
        encode_images_once=encode_images_once,
    )
    trainer = MGPOTrainer(config)
    engine = trainer.engine
    suppress = _stop_ids(trainer.processor, engine.model) + [image_token_id(trainer.processor)]
    device = trainer.accelerator.device
    # Applied after the seeded Gumbel noise, before the argmax: sampling without the stop tokens.
    engine.extra_logits_processors = lambda trajectories, turn: [SuppressTokensLogitsProcessor(suppress, device=device)]
    seen: list = []
    original_run = engine.run

    def recording_run(*args, **kwargs):
        result = original_run(*args, **kwargs)
        seen.append(result.trajectories)
        return result

    engine.run = recording_run
    rows = []
    for i in range(steps + 1):
        seen.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics = trainer.train_step()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        trajectories = [t for batch in seen for t in batch]
        generated = sum(sum(t.loss_mask) for t in trajectories)
        total = sum(len(t.input_ids) for t in trajectories)
        if i == 0:
            continue
        rows.append(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "generation_s": metrics["time_generation"],
                "environment_s": metrics["time_environment"],
                "learning_s": metrics["time_learning"],
                "completions": len(trajectories),
                "generated_tokens": generated,
                "total_tokens": total,
                "prompt_tokens": total - generated,
                "reward_mean": metrics["reward_mean"],
            }
        )
    side = "ours" if encode_images_once else "ours-every-copy"
    return {"side": side, "steps": rows, "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in trainer.model.parameters())}


# ---------------------------------------------------------------------------- TRL
def build_trl_dataset():
    """The single-turn prompts exactly as our environment writes them, image as a placeholder + ``images``."""
    from datasets import Dataset

    from mgpo_env.highres_vqa import HighResVQAEnv

    env = HighResVQAEnv(dataset_kwargs=DATASET_KWARGS, protocol="single_turn", min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    rows = []
    for index in range(len(env.dataset)):
        env.reset(options={"index": index})
        images = []
        prompt = []
        for message in env.chat_messages():
            content = []
            for part in message["content"]:
                if part["type"] == "image":
                    images.append(part["image"])
                    content.append({"type": "image"})
                else:
                    content.append(part)
            prompt.append({"role": message["role"], "content": content})
        sample = env.sample
        rows.append({"prompt": prompt, "images": images, "answer": sample.answer, "choices": list(sample.choices)})
    return Dataset.from_list(rows), rows[0]["images"][0].size


def run_trl(model_dir: str, steps: int, checkpointing: bool = False) -> dict:
    import torch

    torch.set_num_threads(1)
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from mgpo_agents.qwen_processor import image_token_id, load_model, load_processor
    from mgpo_env.grading import answer_reward

    torch.manual_seed(0)
    processor = load_processor(model_dir)
    model = load_model(model_dir, dtype=torch.float32)
    suppress = _stop_ids(processor, model) + [image_token_id(processor)]
    dataset, image_size = build_trl_dataset()
    work = Path(tempfile.mkdtemp(prefix="trl-compare-trl-"))
    args = GRPOConfig(
        output_dir=str(work / "out"),
        per_device_train_batch_size=GROUP * PROMPTS,
        gradient_accumulation_steps=1,
        num_generations=GROUP,
        num_iterations=1,
        max_completion_length=MAX_NEW,
        temperature=TINY.temperature,
        top_p=TINY.top_p,
        beta=KL,
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_grad_norm=TINY.max_grad_norm,
        max_steps=steps + 1,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        fp16=False,
        use_vllm=False,
        save_strategy="no",
        dataloader_num_workers=0,
        seed=0,
        generation_kwargs={"suppress_tokens": suppress},
        # TRL's GRPOConfig turns gradient checkpointing on by default; ours has none, so off for equal work.
        gradient_checkpointing=checkpointing,
    )

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []
            self.cpu: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

    timer = Timer()
    generate_times: list[float] = []
    original_generate = model.generate

    def timed_generate(*a, **k):
        started = time.perf_counter()
        out = original_generate(*a, **k)
        generate_times.append(time.perf_counter() - started)
        return out

    model.generate = timed_generate  # TRL calls the unwrapped model's generate (one call per step here)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[answer_reward],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=[timer],
    )
    ref = trainer.ref_model
    ref_dtype = str(next(ref.parameters()).dtype) if ref is not None else None
    trainer.train()
    checkpointed = bool(getattr(model, "is_gradient_checkpointing", False))
    logs = [h for h in trainer.state.log_history if "num_tokens" in h]
    rows = []
    assert len(generate_times) == len(timer.ends), (len(generate_times), len(timer.ends))
    for i in range(1, len(timer.ends)):
        log, prev = logs[i], logs[i - 1]
        completions = GROUP * PROMPTS
        generated = log["completions/mean_length"] * completions
        total = log["num_tokens"] - prev["num_tokens"]
        rows.append(
            {
                "wall_s": timer.ends[i] - timer.ends[i - 1],
                "cpu_s": timer.cpu[i] - timer.cpu[i - 1],
                "generation_s": generate_times[i],
                "completions": completions,
                "generated_tokens": generated,
                "total_tokens": total,
                "prompt_tokens": total - generated,
                "reward_mean": log.get("reward"),
                "completion_min_length": log.get("completions/min_length"),
            }
        )
    import trl

    return {
        "side": "trl",
        "steps": rows,
        "gradient_checkpointing": checkpointed,
        "threads": torch.get_num_threads(),
        "ref_dtype": ref_dtype,
        "image_size": list(image_size),
        "trl_version": trl.__version__,
        "loss_type": args.loss_type,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# --------------------------------------------------------------------------- driver
def _mean(runs: list[dict], key: str) -> float:
    values = [row[key] for run in runs for row in run["steps"]]
    return sum(values) / len(values) if values else float("nan")


def summarise(result: dict) -> dict:
    rows = result["steps"]
    n = len(rows)
    wall = sum(r["wall_s"] for r in rows)
    gen = sum(r["generated_tokens"] for r in rows)
    tot = sum(r["total_tokens"] for r in rows)
    return {
        "step_s": wall / n,
        "step_s_each": [round(r["wall_s"], 3) for r in rows],
        "step_s_median": statistics.median(r["wall_s"] for r in rows),
        "cpu_s": sum(r["cpu_s"] for r in rows) / n,
        "generation_s": sum(r["generation_s"] for r in rows) / n,
        "completions": rows[0]["completions"],
        "gen_tokens_per_step": gen / n,
        "total_tokens_per_step": tot / n,
        "gen_tok_s": gen / wall,
        "total_tok_s": tot / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--rounds", type=int, default=2, help="run the sides in turn this many times")
    parser.add_argument("--trl-gradient-checkpointing", action="store_true", help="keep TRL's default gradient checkpointing (ours has none)")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(RESULTS / "trl_compare.md"))
    args = parser.parse_args()

    if args.worker:
        if args.worker in ("ours", "ours-every-copy"):
            result = run_ours(args.model_dir, args.steps, encode_images_once=args.worker == "ours")
        else:
            result = run_trl(args.model_dir, args.steps, args.trl_gradient_checkpointing)
        print("RESULT " + json.dumps(result))
        return 0

    from mgpo_agents.tiny_model import build_tiny_qwen25vl

    model_dir = str(build_tiny_qwen25vl(Path(tempfile.mkdtemp(prefix="trl-compare-model-")) / "model", seed=0))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    failures: dict[str, str] = {}
    for _ in range(args.rounds):
        for side in SIDES:
            cmd = [sys.executable, __file__, "--worker", side, "--model-dir", model_dir, "--steps", str(args.steps)]
            if args.trl_gradient_checkpointing:
                cmd.append("--trl-gradient-checkpointing")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                failures[side] = (proc.stderr or proc.stdout)[-4000:]
                print(f"{side} FAILED:\n{failures[side]}", file=sys.stderr)
                continue
            result = json.loads(line[len("RESULT ") :])
            results[side].append(result)
            print(side, json.dumps(summarise(result)), flush=True)

    summary = {}
    for side, runs in results.items():
        if runs:
            merged = {"steps": [r for run in runs for r in run["steps"]]}
            summary[side] = summarise(merged)
    extra = results["trl"][0] if results["trl"] else {}

    header = "| trainer | s / step (each) | of which generate() | CPU s / step | completions / step | generated tok / step | total tok / step | generated tok/s | total tok/s |\n|---|---|---|---|---|---|---|---|---|"
    lines = [header]
    names = {
        "ours": "ours (MGPOTrainer, single_turn)",
        "ours-every-copy": "ours, every image copy encoded (`encode_images_once=False`)",
        "trl": f"TRL GRPOTrainer {extra.get('trl_version', '')}",
    }
    for side, name in names.items():
        if side in summary:
            s = summary[side]
            lines.append(
                f"| {name} | {s['step_s']:.3f} ({', '.join(map(str, s['step_s_each']))}) | {s['generation_s']:.3f} | {s['cpu_s']:.3f} | {s['completions']} | {s['gen_tokens_per_step']:.0f} | "
                f"{s['total_tokens_per_step']:.0f} | {s['gen_tok_s']:.0f} | {s['total_tok_s']:.0f} |"
            )
        else:
            lines.append(f"| {name} | failed | | | | | | | |")
    table = "\n".join(lines)
    ratio = None
    if "ours" in summary and "trl" in summary:
        ratio = {
            "step_time": summary["trl"]["step_s"] / summary["ours"]["step_s"],
            "gen_tok_s": summary["ours"]["gen_tok_s"] / summary["trl"]["gen_tok_s"],
            "total_tok_s": summary["ours"]["total_tok_s"] / summary["trl"]["total_tok_s"],
            "median_step_time": summary["trl"]["step_s_median"] / summary["ours"]["step_s_median"],
            "cpu_time": summary["trl"]["cpu_s"] / summary["ours"]["cpu_s"],
            "per_round": [
                summarise(t)["step_s"] / summarise(o)["step_s"] for o, t in zip(results["ours"], results["trl"])
            ],
        }
    print()
    print(table)
    if ratio:
        print(
            f"\nours / TRL: step-time speed-up {ratio['step_time']:.2f}x (median steps {ratio['median_step_time']:.2f}x; CPU time {ratio['cpu_time']:.2f}x; per round "
            f"{', '.join(f'{r:.2f}x' for r in ratio['per_round'])}), generated tok/s {ratio['gen_tok_s']:.2f}x, total tok/s {ratio['total_tok_s']:.2f}x"
        )

    command = "python benchmarks/trl_compare.py" + (f" --steps {args.steps}" if args.steps != 3 else "") + (f" --rounds {args.rounds}" if args.rounds != 2 else "") + (" --trl-gradient-checkpointing" if args.trl_gradient_checkpointing else "")
    md = [
        "# Training throughput: our trainer vs TRL GRPOTrainer (issue 7)",
        "",
        f"Command: `{command}` (CPU, {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, 1 torch thread per side; "
        f"each side in its own subprocess, run one after the other, {args.rounds} round(s), 1 warm-up step + {args.steps} timed steps per side per round).",
        "",
        "## Settings (equal on both sides)",
        "",
        f"* model: the tiny random Qwen2.5-VL from `build_tiny_qwen25vl(dir, seed=0)` (one directory, loaded by both; float32; "
        f"{extra.get('parameters', '?')} parameters); reference model for the KL also float32 (TRL's ref: {extra.get('ref_dtype')})",
        f"* data: `SyntheticTask({', '.join(f'{k}={v}' for k, v in DATASET_KWARGS.items())})`, single-turn prompts exactly as our "
        f"environment writes them (system + question + options + image); images fitted to min/max pixels {MIN_PIXELS}/{MAX_PIXELS} "
        f"(= 36*28*28) by the environment before either side sees them: {extra.get('image_size')} pixels, the same visual tokens on both sides",
        f"* group size {GROUP}, {PROMPTS} prompts per step = {GROUP * PROMPTS} completions, one optimiser step per batch "
        f"(ours: mini_batch_prompts={TINY.mini_batch_prompts}, micro_batch_size={TINY.micro_batch_size}, ppo_epochs={TINY.ppo_epochs}; "
        f"TRL: per_device_train_batch_size={GROUP * PROMPTS}, "
        "gradient_accumulation_steps=1, num_iterations=1)",
        f"* completions: max {MAX_NEW} new tokens (ours max_new_tokens, TRL max_completion_length), temperature 1, top_p 1; "
        "stop tokens and the image token suppressed on both sides (ours: a `SuppressTokensLogitsProcessor` via the engine's "
        "`extra_logits_processors`; TRL: `generation_kwargs={'suppress_tokens': ...}`), so every completion is the full length",
        f"* KL coefficient {KL} (ours kl_coef, TRL beta), lr {LR} constant, AdamW, max_grad_norm 1.0; TRL loss_type "
        f"`{extra.get('loss_type')}` (token-level normalisation, like ours); entropy bonus 0 on both sides (TRL's default; "
        "ours set to 0 from its 0.001 default; both still compute entropies)",
        f"* gradient checkpointing: ours none; TRL {'on (its GRPOConfig default)' if extra.get('gradient_checkpointing') else 'off (`gradient_checkpointing=False`; its GRPOConfig default is on)'}",
        "* reward: `mgpo_env.grading.answer_reward` (TRL reward function; our environment grades with the same code)",
        "* TRL: `use_cpu=True`, `bf16=False`, `use_vllm=False`, transformers `generate`",
        "",
        "## What is timed",
        "",
        "* ours: `MGPOTrainer.train_step()` end to end (rollout with environment, advantages, reference log-probs, loss, backward, optimiser step, metrics)",
        "* TRL: time between consecutive `on_step_end` callbacks (data loading, prompt processing, generation, reward, reference "
        "log-probs, loss, backward, optimiser step, logging)",
        "* CPU s / step: `time.process_time()` of the worker process over the same interval (1 torch thread: the work done, "
        "robust to other processes competing for the cores)",
        "* generate() column: ours the `time_generation` metric (batched `generate` of the rollout engine); TRL the wall time "
        "of its `model.generate` call (wrapped by this script)",
        "* generated tokens: completion tokens (TRL: `completions/mean_length` x completions); total tokens: prompt (incl. "
        "visual tokens) + completion tokens (TRL: difference of its `num_tokens` counter; ours: trajectory lengths)",
        "",
        "## Results",
        "",
        table,
        "",
    ]
    if ratio:
        md += [
            f"**ours / TRL: {ratio['step_time']:.2f}x step-time speed-up, {ratio['gen_tok_s']:.2f}x generated tokens/s, "
            f"{ratio['total_tok_s']:.2f}x total tokens/s** (target >= 1.5x: {'met' if ratio['total_tok_s'] >= 1.5 else 'NOT met'}). "
            f"Median step times give {ratio['median_step_time']:.2f}x, process CPU time per step {ratio['cpu_time']:.2f}x "
            "(single-threaded, so CPU time is the work done, less sensitive to other load on the machine); the rounds separately "
            f"{', '.join(f'{r:.2f}x' for r in ratio['per_round'])} (TRL mean step time / ours, same round).",
            "",
        ]
    if "ours" in summary and "ours-every-copy" in summary:
        md += [
            "## Where ours spends a step (means over the timed steps)",
            "",
            "| ours | generation s | environment s | learning s (reference pass, policy pass, backward, AdamW) | step s |",
            "|---|---|---|---|---|",
            *[
                f"| {names[side]} | {_mean(results[side], 'generation_s'):.3f} | {_mean(results[side], 'environment_s'):.3f} | "
                f"{_mean(results[side], 'learning_s'):.3f} | {summary[side]['step_s']:.3f} |"
                for side in ("ours", "ours-every-copy")
            ],
            "",
            f"Encoding each distinct image once (the 8 episodes of a group show one image) makes ours "
            f"{summary['ours-every-copy']['step_s'] / summary['ours']['step_s']:.2f}x faster a step than encoding every copy, "
            "in the same run: the vision tower runs in generation, in the reference pass and in the policy pass "
            f"(forward and backward), each on {PROMPTS} images instead of {PROMPTS * GROUP}.",
            "",
        ]
    for side, text in failures.items():
        md += [f"## {side} failed", "", "```", text, "```", ""]
    md += ["Raw per-step numbers:", "", "```json", json.dumps(results, indent=1), "```", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(md))
    print(f"wrote {args.out}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
