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

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mgpo_agents.tiny_model OUTPUT_DIR [--vocab bpe|qwen] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m mgpo_agents.tiny_model",
        description="Write a tiny random Qwen2.5-VL model directory (offline).",
    )
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--vocab", choices=["bpe", "qwen"], default="bpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=2048, help="model/tokenizer vocab for --vocab bpe")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        path = build_tiny_qwen25vl(args.output_dir, seed=args.seed, vocab=args.vocab, vocab_size=args.vocab_size)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0
