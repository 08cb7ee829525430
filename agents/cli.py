"""The ``mgpo`` command: one entry point, one module per sub-command.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Only the chosen module is imported, so ``mgpo demo`` does
not pay for importing torch.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Callable, Optional, Sequence


def _demo() -> ModuleType:
    from mgpo_tools import demo

    return demo


def _data() -> ModuleType:
    from mgpo_datasets import data_check

    return data_check


def _train() -> ModuleType:
    from . import train_command

    return train_command


def _eval() -> ModuleType:
    from . import eval_command

    return eval_command


def _report() -> ModuleType:
    from mgpo_tools import report

    return report


def _serve() -> ModuleType:
    from mgpo_env.remote import server

    return server


# name -> (the module's loader, one-line help)
COMMANDS: dict[str, tuple[Callable[[], ModuleType], str]] = {
    "demo": (_demo, "play episodes with scripted policies and save rendered pictures"),
    "data": (_data, "validate a dataset spec and summarise it"),
    "train": (_train, "train a Qwen2.5-VL-family model with MGPO or GRPO"),
    "eval": (_eval, "evaluate a model on a dataset (greedy by default)"),
    "report": (_report, "write a self-contained HTML report of a run or an evaluation"),
    "serve": (_serve, "serve mgpo/HighResVQA-v0 over the network (OpenEnv server; needs the 'serve' extra)"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: mgpo COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {description}" for name, (_, description) in COMMANDS.items()]
    lines += ["", "Run 'mgpo COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from mgpo_env import __version__

        print(f"mgpo {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"mgpo: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    load, description = COMMANDS[name]
    try:
        module = load()
    except ImportError as error:
        print(f"mgpo {name}: {error}; install the project's extras (pip install 'mgpo[all]')", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"mgpo {name}", description=description)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
