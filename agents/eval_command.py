"""``mgpo eval``: evaluate a model directory on a dataset (greedy by default)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import _parse_json_object


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model directory (a checkpoint folder works), loaded from disk only")
    parser.add_argument("--dataset", default="synthetic", help="dataset spec, e.g. 'vstar:/data/vstar_bench' (default: synthetic)")
    parser.add_argument("--dataset-kwargs", type=_parse_json_object, default={}, help="dataset loader options as JSON")
    parser.add_argument("--protocol", choices=["two_turn", "single_turn", "free"], default="two_turn")
    parser.add_argument("--max-turns", type=int, default=4, help="replies allowed in the free protocol")
    parser.add_argument("--samples", type=int, default=0, help="questions to evaluate (0: all)")
    parser.add_argument("--output", type=Path, default=Path("outputs/eval"), help="folder for results.jsonl and summary.json")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--min-pixels", type=int, default=256 * 28 * 28)
    parser.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    parser.add_argument("--box-frame", choices=["pixel", "norm1000", "relative"], default="pixel")
    parser.add_argument("--batch-questions", type=int, default=16, help="questions generated together")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--save-episodes", action="store_true", help="store every episode (images included) for 'mgpo report'")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from mgpo_datasets.registry import resolve_dataset
    from mgpo_env.image_store import ImageStore

    from .config import MGPOConfig
    from .evaluation import evaluate, recorder, time_estimate
    from .qwen_processor import load_model, load_processor
    from .rollout import RolloutEngine
    from .trainer import _dtype, env_factory

    if args.temperature < 0:
        raise SystemExit("--temperature must be >= 0")
    config = MGPOConfig(
        model=args.model, dataset=args.dataset, dataset_kwargs=args.dataset_kwargs, protocol=args.protocol, max_turns=args.max_turns,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels, box_frame=args.box_frame, max_new_tokens=args.max_new_tokens, seed=args.seed,
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.model, dtype=_dtype(args.dtype, device), trust_remote_code=args.trust_remote_code).to(device)
    processor = load_processor(args.model, trust_remote_code=args.trust_remote_code)
    dataset = resolve_dataset(args.dataset, **args.dataset_kwargs)
    greedy = args.temperature == 0
    engine = RolloutEngine(model, processor, env_factory(config, dataset, ImageStore()), max_new_tokens=args.max_new_tokens, temperature=args.temperature or 1.0, seed=args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    store_episode = None
    if args.save_episodes:
        from mgpo_tools.episode_store import EpisodeStore

        store_episode = recorder(EpisodeStore(args.output / "episodes"), split="eval")
    count = min(len(dataset), args.samples) if args.samples else len(dataset)
    which = f"the first {count} of {len(dataset)}" if count < len(dataset) else f"all {count}"
    hint = "" if args.samples else " (--samples N evaluates fewer)"
    print(f"mgpo eval: {which} questions of {args.dataset}{hint}; a time estimate follows the first batch of {min(count, args.batch_questions)}", flush=True)

    def estimate(done: int, seconds: float) -> None:
        tqdm.write(f"mgpo eval: {time_estimate(count, done, seconds)}")  # above the progress bar, not through it

    summary = evaluate(
        engine, list(range(count)), batch_questions=args.batch_questions, greedy=greedy, output=args.output / "results.jsonl",
        on_episode_end=store_episode, on_first_batch=estimate,
    )
    summary.update(model=str(args.model), dataset=args.dataset, protocol=args.protocol, greedy=greedy)
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0
