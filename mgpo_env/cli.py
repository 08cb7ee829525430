"""The ``mgpo`` command: one entry point, one module per sub-command.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen module is imported, so ``mgpo demo`` does
not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Optional, Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("mgpo_env.demo", "play episodes with scripted policies and save rendered pictures"),
    "data": ("mgpo_envs.data_check", "validate a dataset spec and summarise it"),
    "train": ("mgpo_agents.train_command", "train a Qwen2.5-VL-family model with MGPO or GRPO"),
    "eval": ("mgpo_agents.eval_command", "evaluate a model on a dataset (greedy by default)"),
    "report": ("mgpo_env.report", "write a self-contained HTML report of a run or an evaluation"),
}


def _available() -> dict[str, tuple[str, str]]:
    return {name: spec for name, spec in COMMANDS.items() if importlib.util.find_spec(spec[0]) is not None}


def _usage(commands: dict[str, tuple[str, str]]) -> str:
    width = max(len(name) for name in commands)
    lines = ["usage: mgpo COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {description}" for name, (_, description) in commands.items()]
    lines += ["", "Run 'mgpo COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(commands))
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"mgpo {__version__}")
        return 0
    name = argv[0]
    if name not in commands:
        print(f"mgpo: unknown command {name!r}\n\n{_usage(commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    parser = argparse.ArgumentParser(prog=f"mgpo {name}", description=commands[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
