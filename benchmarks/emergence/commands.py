"""The miniature's command line: ``python benchmarks/emergence.py [command] [options]``.

The free-form experiment (issue #23's; the README's section on the miniature):

    python benchmarks/emergence.py supervised      # the base pipeline from random weights, base seeds 0 and 1 in parallel
    python benchmarks/emergence.py                 # every method x 3 RL seeds from the committed base
    python benchmarks/emergence.py --quick         # one RL seed, fewer steps (about 10 minutes)
    python benchmarks/emergence.py --from-scratch  # supervised, then the comparison from each base seed

and its parts: ``leak-sweep``, ``freeform-base`` (one base stage), ``freeform-rl`` (one RL run),
``freeform-compare`` (the comparison from ``--checkpoint``) and ``freeform-report`` (redraw it).

The cell version it replaced (four fixed boxes; kept so its pages can be reproduced):
``cell`` (its comparison, with ``--quick`` and ``--from-scratch``), ``cell-supervised``,
``cell-rl``, ``cell-before``, ``cell-report`` and ``cell-gates``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .experiment import (
    COMMITTED_CHECKPOINT as CELL_CHECKPOINT,
    METHODS as CELL_METHODS,
    REPOSITORY_ROOT,
    RUN_THREADS,
    RLSettings,
    StageSettings,
    _run_parallel,
    compare as cell_compare,
    evaluate_checkpoint,
    measure_gates,
    run_rl,
    train_base_and_warmstart,
    write_report as write_cell_report,
)
from .freeform_compare import COMMITTED_BASE as FREEFORM_CHECKPOINT

QUICK_CHANGES = {"steps": 30, "eval_every": 30, "eval_questions": 60}
"""What ``--quick`` changes in the comparison's settings (one RL seed besides); ``--settings`` wins over it."""
CELL_QUICK_CHANGES = {"steps": 60, "eval_every": 60}

_COMPARISON = {"output", "checkpoint", "quick", "from_scratch", "seeds", "base_seeds", "steps", "lanes", "settings", "methods", "threads"}
OPTIONS: dict[str, set[str]] = {
    "all": _COMPARISON,
    "freeform-compare": _COMPARISON,
    "supervised": {"output", "base_seeds", "lanes", "threads"},
    "leak-sweep": {"output", "checkpoint", "threads"},
    "freeform-base": {"output", "checkpoint", "steps", "base_settings", "threads"},
    "freeform-rl": {"output", "checkpoint", "steps", "settings", "threads", "method", "fixed_box", "seed"},
    "freeform-report": {"output"},
    "cell": {"output", "checkpoint", "quick", "from_scratch", "seeds", "steps", "lanes", "settings"},
    "cell-supervised": {"output"},
    "cell-rl": {"output", "checkpoint", "steps", "settings", "seed", "protocol"},
    "cell-before": {"output", "checkpoint", "settings", "protocol"},
    "cell-report": {"output", "checkpoint"},
    "cell-gates": {"checkpoint"},
}
"""The options each command reads; any other option given is refused rather than ignored."""

def option_fields(text: Optional[str], steps: Optional[int], **more: Any) -> dict[str, Any]:
    """Settings fields from a JSON option, with ``--steps`` (when given) and ``more`` on top.

    >>> option_fields('{"steps": 5, "top_p": 0.7}', 9, threads=1)
    {'steps': 9, 'top_p': 0.7, 'threads': 1}
    """
    return {**json.loads(text or "{}"), **({"steps": steps} if steps is not None else {}), **more}


def chosen_settings(cls: Any, text: Optional[str], steps: Optional[int], quick: Optional[dict[str, Any]] = None,
                    base: Optional[dict[str, Any]] = None, **more: Any) -> Any:
    """``cls`` from, in rising precedence: ``base``, ``quick``'s changes, ``--settings`` (``text``), ``--steps`` and ``more``;
    evaluations at least every ``--steps`` when it is given.

    >>> from emergence.freeform_rl import FreeformRLSettings
    >>> s = chosen_settings(FreeformRLSettings, '{"eval_questions": 80}', 12, quick={"steps": 30, "eval_questions": 60}, base={"eval_seed": 47})
    >>> (s.steps, s.eval_every, s.eval_questions, s.eval_seed)
    (12, 12, 80, 47)
    """
    settings = cls(**{**(base or {}), **(quick or {}), **option_fields(text, steps, **more)})
    if steps is not None and hasattr(settings, "eval_every"):
        settings.eval_every = min(settings.eval_every, steps) or settings.eval_every
    return settings


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/emergence.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("command", nargs="?", default="all", choices=list(OPTIONS), metavar="command",
                   help="all (default): the free-form comparison; supervised: its base pipeline; "
                   + ", ".join(c for c in OPTIONS if c not in ("all", "supervised")))
    p.add_argument("--output", type=Path, default=None, help="results folder (default outputs/emergence, outputs/emergence-quick with --quick; "
                   "supervised: outputs/emergence/supervised; freeform-rl: outputs/emergence/runs/<method>-seed<seed>)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the base RL starts from (default: the committed one of the command's version); freeform-base: its start; "
                   "leak-sweep: the VLM that reads crops as a second reader")
    p.add_argument("--quick", action="store_true", help="one RL seed and fewer steps (about 10 minutes)")
    p.add_argument("--from-scratch", action="store_true", help="run the supervised pipeline first (all: for each of --base-seeds)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="RL seeds")
    p.add_argument("--base-seeds", type=int, nargs="+", default=[0, 1], help="supervised, --from-scratch: base-ability seeds")
    p.add_argument("--steps", type=int, default=None, help="RL steps (freeform-base: the stage's steps)")
    p.add_argument("--lanes", type=int, default=2, help="runs in parallel (one CPU thread each)")
    p.add_argument("--settings", default=None, help="RL settings as JSON (FreeformRLSettings fields; cell commands: RLSettings), e.g. '{\"top_p\": 0.7}'")
    p.add_argument("--base-settings", default=None, help="freeform-base: FreeformBaseSettings fields as JSON, e.g. '{\"reading_most\": 1.25}'")
    p.add_argument("--threads", type=int, default=RUN_THREADS, help="supervised, freeform-base, freeform-rl, leak-sweep: torch threads")
    p.add_argument("--method", default="mgpo", help="freeform-rl: mgpo, grpo-equal-tokens, random-box, fixed-box or oracle")
    p.add_argument("--methods", nargs="+", default=None, help="all, freeform-compare: a subset of the methods (default: all five)")
    p.add_argument("--fixed-box", default=None, help="freeform-rl with --method fixed-box: the box as fixed:x1,y1,x2,y2 (view pixels)")
    p.add_argument("--seed", type=int, default=0, help="freeform-rl, cell-rl: the run's seed")
    p.add_argument("--protocol", choices=list(CELL_METHODS), default="two_turn", help="cell-rl, cell-before")
    return p


def check_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse any option the command does not read (:data:`OPTIONS`), and --from-scratch with --checkpoint."""
    defaults = vars(p.parse_args([]))
    given = sorted(k for k, v in vars(args).items() if k != "command" and v != defaults[k])
    ignored = [k for k in given if k not in OPTIONS[args.command]]
    if ignored:
        p.error(f"{args.command} does not take " + ", ".join("--" + k.replace("_", "-") for k in ignored))
    if args.from_scratch and args.checkpoint:
        p.error("--from-scratch builds its own checkpoint; leave out --checkpoint")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    check_options(p, args)
    if args.command.startswith("cell"):
        return cell_main(args)
    output = args.output or Path("outputs/emergence-quick" if args.quick else "outputs/emergence")

    if args.command == "supervised":
        return 0 if supervise(args.output or Path("outputs/emergence/supervised"), args.base_seeds, args.lanes, args.threads) else 1
    if args.command == "leak-sweep":  # what crops of each size reveal of the free-form task's attribute
        from .freeform_task import FREEFORM_TASK
        from .leak_sweep import markdown_table, run_leak_sweep

        vlm = None
        if args.checkpoint is not None:  # the trained VLM as a second reader
            from .freeform_supervised import vlm_reading_curves

            torch.set_num_threads(args.threads)
            vlm = vlm_reading_curves(args.checkpoint)
        print(markdown_table(run_leak_sweep(FREEFORM_TASK, output, vlm=vlm)))
        return 0
    if args.command == "freeform-base":  # one base stage from --checkpoint (resumes in --output)
        from .freeform_supervised import FreeformBaseSettings, train_freeform_base

        if args.checkpoint is None:
            p.error("freeform-base needs --checkpoint (the weights the stage starts from)")
        train_freeform_base(args.output or Path("outputs/emergence/freeform-base"), args.checkpoint,
                            chosen_settings(FreeformBaseSettings, args.base_settings, args.steps, threads=args.threads))
        return 0
    if args.command == "freeform-rl":  # one RL run on the free-form task
        return freeform_rl(args, args.checkpoint or FREEFORM_CHECKPOINT, args.output or Path(f"outputs/emergence/runs/{args.method}-seed{args.seed}"))
    if args.command == "freeform-report":
        from .freeform_compare import write_report

        write_report(output)
        return 0
    # all, freeform-compare: every method and RL seed from one base (all --from-scratch: from each base seed)
    from .freeform_compare import FINAL_EVAL_SEED, compare_freeform
    from .freeform_rl import METHODS, FreeformRLSettings

    settings = chosen_settings(FreeformRLSettings, args.settings, args.steps, quick=QUICK_CHANGES if args.quick else None,
                               base={"eval_seed": FINAL_EVAL_SEED})
    seeds = args.seeds[:1] if args.quick else args.seeds
    methods = args.methods or list(METHODS)
    if args.from_scratch:
        bases = supervise(output / "supervised", args.base_seeds, args.lanes, args.threads)
        if not bases:
            return 1
        for base_seed, checkpoint in bases.items():
            compare_freeform(checkpoint, output / f"base-seed{base_seed}", settings, seeds, methods, lanes=args.lanes)
        return 0
    compare_freeform(args.checkpoint or FREEFORM_CHECKPOINT, output, settings, seeds, methods, lanes=args.lanes)
    return 0


def supervise(output: Path, base_seeds: Sequence[int], lanes: int, threads: int) -> dict[int, Path]:
    """The base pipeline for each seed into ``output/seed-<s>`` (in parallel lanes of one thread when there are
    several); their checkpoints, or nothing if a lane failed."""
    from .freeform_pipeline import run_pipeline

    base_seeds = list(dict.fromkeys(base_seeds))
    if len(base_seeds) == 1 or lanes == 1:
        return {s: run_pipeline(output / f"seed-{s}", seed=s, threads=threads) for s in base_seeds}
    script = [sys.executable, str(REPOSITORY_ROOT / "benchmarks" / "emergence.py"), "supervised", "--output", str(output), "--threads", "1"]
    try:
        _run_parallel([script + ["--base-seeds", str(s), "--lanes", "1"] for s in base_seeds], lanes, output / "logs")
    except RuntimeError as failure:
        print(f"error: {failure}", file=sys.stderr)
        return {}
    return {s: output / f"seed-{s}" / "checkpoint" for s in base_seeds}


def freeform_rl(args: argparse.Namespace, checkpoint: Path, output: Path) -> int:
    from .freeform_rl import FreeformRLSettings, best_fixed_box, run_method

    rl = chosen_settings(FreeformRLSettings, args.settings, args.steps, threads=args.threads)
    fixed, found = args.fixed_box, None
    if args.method == "fixed-box" and not fixed:  # search it on training questions with the starting weights
        torch.set_num_threads(args.threads)
        found = best_fixed_box(checkpoint)
        fixed = found["rule"]
        print(f"[fixed-box] {json.dumps(found['confirmed'])}: using {fixed}", flush=True)
    run_method(checkpoint, args.method, args.seed, rl, output, fixed_box=fixed)  # starts by emptying ``output``
    if found is not None:
        (output / "fixed_box.json").write_text(json.dumps(found, indent=2) + "\n")
    return 0


def cell_main(args: argparse.Namespace) -> int:
    """The cell version's commands (see :mod:`emergence.experiment`)."""
    output = args.output or Path("outputs/emergence-cell-quick" if args.quick else "outputs/emergence-cell")
    settings = chosen_settings(RLSettings, args.settings, args.steps, quick=CELL_QUICK_CHANGES if args.quick else None)
    seeds = args.seeds[:1] if args.quick else args.seeds
    checkpoint = args.checkpoint or CELL_CHECKPOINT
    if args.command == "cell-rl":
        run_rl(checkpoint, args.protocol, args.seed, settings, output / "runs" / f"{args.protocol}-seed{args.seed}")
        return 0
    if args.command == "cell-before":
        evaluate_checkpoint(checkpoint, args.protocol, settings, output / f"before-{args.protocol}.json")
        return 0
    if args.command == "cell-gates":
        print(json.dumps(measure_gates(checkpoint), indent=2))
        return 0
    if args.command == "cell-report":  # redraw from the runs on disk, keeping the recorded wall time
        previous = output / "summary.json"
        seconds = json.loads(previous.read_text()).get("seconds", float("nan")) if previous.exists() else float("nan")
        write_cell_report(output, seconds, checkpoint)
        return 0
    if args.command == "cell-supervised" or args.from_scratch:
        report = train_base_and_warmstart(output / "supervised", StageSettings())
        checkpoint = output / "supervised" / "warmstart"
        if args.command == "cell-supervised":
            print(json.dumps({k: v for k, v in report.items() if k != "settings"}, indent=2))
            return 0
    if not (checkpoint / "config.json").exists():
        print(f"error: no warm-start checkpoint at {checkpoint}; run with --from-scratch (or cell-supervised) first", file=sys.stderr)
        return 2
    cell_compare(checkpoint, output, settings, seeds, args.lanes)
    return 0
