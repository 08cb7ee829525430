"""``python -m mgpo_agents.tiny_model OUTPUT_DIR [--vocab bpe|qwen] [--seed N]``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
