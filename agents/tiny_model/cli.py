"""The command line, ``python -m mgpo_agents.tiny_model OUTPUT_DIR``.

Its own module rather than ``__main__.py``, so the package can re-export
:func:`main` without importing ``__main__`` (``python -m`` would then warn that the
module is already loaded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from .build import build_tiny_qwen25vl
from .real_size import build_real_size_qwen25vl

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mgpo_agents.tiny_model OUTPUT_DIR [--size tiny|3b|7b] [--vocab bpe|qwen] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m mgpo_agents.tiny_model",
        description="Write a random-weight Qwen2.5-VL model directory (offline): the tiny model, "
        "or with --size 3b/7b a real-size one in the published layout.",
    )
    parser.add_argument("output_dir", type=Path)
    parser.add_argument(
        "--size", choices=["tiny", "3b", "7b"], default="tiny",
        help="tiny (default, ~1M parameters) or the public Qwen2.5-VL-3B/7B-Instruct config: "
        "sharded bf16 weights (7.5 / 16.6 GB), the real Qwen2 tokenizer, the published chat template",
    )
    parser.add_argument("--vocab", choices=["bpe", "qwen"], default=None, help="tiny only: bpe (default) or qwen; the real sizes always use qwen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=2048, help="model/tokenizer vocab for --vocab bpe")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"], help="real sizes: weights dtype (published: bfloat16)")
    parser.add_argument("--max-shard-size", default="4GB", help="real sizes: largest weights file (published: about 4 GB)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.size != "tiny" and args.vocab == "bpe":
        print(f"error: --size {args.size} uses the real Qwen2 vocabulary; leave out --vocab bpe", file=sys.stderr)
        return 2
    try:
        if args.size == "tiny":
            path = build_tiny_qwen25vl(args.output_dir, seed=args.seed, vocab=args.vocab or "bpe", vocab_size=args.vocab_size)
        else:
            path = build_real_size_qwen25vl(args.output_dir, args.size, seed=args.seed, dtype=args.dtype, max_shard_size=args.max_shard_size)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0
