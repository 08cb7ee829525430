"""mgpo_agents: policy optimisation on HighResVQA-v0 (MGPO, and the single-turn GRPO baseline).

    from mgpo_agents import MGPOConfig, MGPOTrainer, preset
    trainer = MGPOTrainer(preset("tiny-cpu", steps=5, output_dir="runs/tiny"))
    trainer.train()

Heavy modules (torch, transformers) load on first use of the names that need them.
"""

from typing import Any

from .config import PRESETS, MGPOConfig, preset

_LAZY = {
    "MGPOTrainer": "trainer",
    "RolloutEngine": "rollout",
    "Trajectory": "trajectory",
    "build_tiny_qwen25vl": "tiny_model",
    "load_model": "qwen_processor",
    "load_processor": "qwen_processor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mgpo_agents' has no attribute {name!r}")


__all__ = ["MGPOConfig", "PRESETS", "preset", *_LAZY]
