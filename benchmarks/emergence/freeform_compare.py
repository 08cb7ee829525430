"""The free-form comparison: every method of :mod:`emergence.freeform_rl`, several RL seeds, one report.

All runs start from one checkpoint with one set of trainer settings
(:class:`~emergence.freeform_rl.FreeformRLSettings`); the best fixed box is searched once, on
training questions, before any run (``fixed_box.json``). Runs go in parallel lanes, one CPU
thread each, as ``python benchmarks/emergence.py freeform-rl ...`` subprocesses, so a crash
loses one run, and a rerun of the report reads whatever runs finished. Held-out questions come
from ``FINAL_EVAL_SEED``, a dataset seed that no probe, check or curriculum choice has used.

The report (:func:`write_report`): ``emergence.json`` (per method and seed: accuracy, valid-box
rate, tight hit rate under :data:`~emergence.freeform_task.HIT_CAP`, mean IoU and median box
area over target area, before and after, with every evaluation in between),
``emergence.md`` (the table, mean ± std over seeds; settings; commands) and
``emergence_curves.png`` (each measure over RL steps) and ``emergence_episodes.png`` (the first
held-out questions played by the trained MGPO weights of the lowest seed, hits and misses alike).

    python benchmarks/emergence.py freeform-compare --checkpoint CKPT --output outputs/freeform --seeds 0 1 2
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mgpo_tools.metrics import read_metrics

from .experiment import REPOSITORY_ROOT, _fmt, _mean_std, _repository_relative, _run_parallel, lanes_text, software_record
from .freeform_rl import METHODS, FreeformRLSettings
from .freeform_task import FREEFORM_TASK, HIT_CAP

COMMITTED_BASE = REPOSITORY_ROOT / "benchmarks" / "checkpoints" / "freeform-base"
"""The committed base of the free-form task, where the comparison starts by default (its ``stage.json`` says how it was built)."""

FINAL_EVAL_SEED = 47
"""Dataset seed of the comparison's held-out questions: used by no probe, check or curriculum."""

METHOD_NAMES = {
    "mgpo": "MGPO (own box)",
    "grpo-equal-tokens": "GRPO, one view at equal tokens",
    "random-box": "random-box control",
    "fixed-box": "best fixed box",
    "oracle": "oracle crop (upper bound)",
}

MEASURES = ("accuracy", "valid_box_rate", "tight_hit_rate", "mean_iou", "median_area_ratio")
"""What each evaluation reports, in table order; tight_hit_rate is the issue's hit rate."""


def has_box(method: str) -> bool:
    """Whether ``method`` plays a turn-1 box (every method but the single-turn baseline)."""
    return METHODS.get(method, ("two_turn",))[0] != "single_turn"


def run_commands(checkpoint: Path, output: Path, settings: FreeformRLSettings, seeds: Sequence[int], methods: Sequence[str],
                 fixed_rule: Optional[str] = None) -> list[list[str]]:
    """One ``freeform-rl`` command per method and seed, MGPO first (the longest runs)."""
    script = [sys.executable, str(REPOSITORY_ROOT / "benchmarks" / "emergence.py"), "freeform-rl"]
    chosen = json.dumps({k: v for k, v in asdict(settings).items() if k != "threads"})
    commands = []
    for seed in seeds:
        for method in methods:
            command = script + ["--method", method, "--seed", str(seed), "--checkpoint", str(checkpoint),
                                "--output", str(output / "runs" / f"{method}-seed{seed}"), "--threads", "1", "--settings", chosen]
            if method == "fixed-box":
                if not fixed_rule:
                    raise ValueError("the fixed-box method needs its rule (fixed:x1,y1,x2,y2); search it first")
                command += ["--fixed-box", fixed_rule]
            commands.append(command)
    commands.sort(key=lambda c: c[c.index("--method") + 1] != "mgpo")  # MGPO first: the longest runs
    return commands


def compare_freeform(checkpoint: Path, output: Path, settings: FreeformRLSettings, seeds: Sequence[int],
                     methods: Sequence[str] = tuple(METHODS), lanes: int = 2) -> dict[str, Any]:
    """Search the fixed box, run every method and seed, then write the report into ``output``."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    seeds = list(dict.fromkeys(seeds))  # a repeated seed would have two runs write one folder
    started = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    record = {**asdict(settings), "threads": 1, "lanes": lanes, "seeds": seeds, "methods": list(methods), "checkpoint": str(checkpoint),
              "software": dict(software_record(), torch_threads=1)}
    (output / "settings.json").write_text(json.dumps(record, indent=2) + "\n")
    rule = None
    if "fixed-box" in methods:
        found_path = output / "fixed_box.json"
        found = json.loads(found_path.read_text()) if found_path.exists() else {}
        if found.get("checkpoint") != str(checkpoint):  # searched with other weights: search again
            from .freeform_rl import best_fixed_box

            found = {**best_fixed_box(checkpoint), "checkpoint": str(checkpoint)}
            found_path.write_text(json.dumps(found, indent=2) + "\n")
        rule = found["rule"]
        print(f"[freeform-compare] the best fixed box on training questions: {rule}", flush=True)
    _run_parallel(run_commands(checkpoint, output, settings, seeds, methods, rule), lanes, output / "logs")
    return write_report(output, time.perf_counter() - started)


def run_folders(output: Path, method: str = "*", seeds: Optional[Sequence[int]] = None) -> list[tuple[str, int, Path]]:
    """The finished runs under ``output/runs`` (those with ``evals.jsonl``) as (method, seed, folder), by method
    then seed; only ``seeds`` where given.

    A folder is named ``<method>-seed<seed>``, as :func:`run_commands` writes it.
    """
    found = []
    for evals in (output / "runs").glob(f"{method}-seed*/evals.jsonl"):
        name, seed = evals.parent.name.rsplit("-seed", 1)
        if seeds is None or int(seed) in seeds:
            found.append((name, int(seed), evals.parent))
    return sorted(found)


def collect_runs(output: Path, methods: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None) -> dict[str, list[dict[str, Any]]]:
    """Every finished run's evaluations under ``output/runs``, by method, in seed order; only
    ``methods`` and ``seeds`` where given (the comparison's own, not older runs left in the folder)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for method, seed, folder in run_folders(output, seeds=seeds):
        if methods is None or method in methods:
            evals = read_metrics(folder / "evals.jsonl")
            runs.setdefault(method, []).append({"seed": seed, "evals": sorted(evals, key=lambda e: e["step"])})
    return {m: runs[m] for m in [*METHODS, *sorted(set(runs) - set(METHODS))] if m in runs}


def results_record(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``emergence.json``'s runs: per method and seed, each measure before and after, and every evaluation."""
    record: dict[str, Any] = {}
    for method, seeds in runs.items():
        record[method] = []
        for run in seeds:
            curve = [{"step": e["step"], **{k: e.get(k) for k in MEASURES}} for e in run["evals"]]
            first, last = ({k: point[k] for k in MEASURES} for point in (curve[0], curve[-1]))
            record[method].append({"seed": run["seed"], "before": first, "after": last, "steps": curve[-1]["step"], "curve": curve})
    return record


def _cell(values: Sequence[Any]) -> str:
    numbers = [float(v) for v in values if v is not None]
    missing = f" (of {len(numbers)})" if 0 < len(numbers) < len(values) else ""  # seeds without a value
    if len(numbers) == 1:  # one seed: no spread to show
        return f"{numbers[0]:.3f}{missing}"
    return _fmt(*_mean_std(numbers)) + missing if numbers else "—"


def results_table(record: dict[str, Any]) -> str:
    """Mean ± std over seeds of each measure, before -> after RL."""
    header = ["method", "seeds", "accuracy before", "accuracy after", "valid boxes after", f"hit rate (<= {HIT_CAP:g}x) before",
              "hit rate after", "mean IoU before", "mean IoU after", "median area / target after"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, seeds in record.items():
        box = has_box(method)

        def both(key: str) -> list[str]:
            return [_cell([s["before"][key] for s in seeds]), _cell([s["after"][key] for s in seeds])] if box else ["— (no box)", "—"]

        cells = [METHOD_NAMES.get(method, method), str(len(seeds)), *[_cell([s[w]["accuracy"] for s in seeds]) for w in ("before", "after")],
                 _cell([s["after"]["valid_box_rate"] for s in seeds]) if box else "—", *both("tight_hit_rate"), *both("mean_iou"),
                 _cell([s["after"]["median_area_ratio"] for s in seeds]) if box else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(record: dict[str, Any], path: Path) -> Path:
    """Each measure over RL steps, per method: the mean over seeds and their range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"accuracy": "held-out accuracy", "valid_box_rate": "valid-box rate", "tight_hit_rate": f"hit rate (holds the target, <= {HIT_CAP:g}x)",
              "mean_iou": "mean IoU with the target", "median_area_ratio": "median box area / target area"}
    colours = {method: f"C{i}" for i, method in enumerate([*METHODS, *sorted(set(record) - set(METHODS))])}  # one colour a method in every panel
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4.2 * len(MEASURES), 3.8))
    for ax, key in zip(axes, MEASURES):
        for method, seeds in record.items():
            if key != "accuracy" and not has_box(method):
                continue
            length = min(len(s["curve"]) for s in seeds)
            steps = [e["step"] for e in seeds[0]["curve"][:length]]
            values = np.array([[np.nan if e[key] is None else e[key] for e in s["curve"][:length]] for s in seeds], dtype=float)
            ax.plot(steps, np.nanmean(values, 0), marker=".", color=colours[method], label=f"{METHOD_NAMES.get(method, method)} ({len(seeds)})")
            if len(seeds) > 1:
                ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), color=colours[method], alpha=0.15)
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("RL step")
        if key != "median_area_ratio":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Free-form grounding: held-out evaluation (greedy) over RL, mean and range over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


EPISODES_SHOWN = 6


def trained_mgpo(output: Path, seeds: Optional[Sequence[int]] = None) -> Optional[Path]:
    """The last saved weights of the lowest-seed finished MGPO run under ``output/runs`` (of ``seeds`` where given)."""
    for _, _, folder in run_folders(output, "mgpo", seeds):
        steps = sorted((folder / "checkpoints").glob("step-*"))
        if steps:
            return steps[-1]
    return None


def episodes_picture(checkpoint: Path, eval_seed: int, questions: int, path: Path, count: int = EPISODES_SHOWN) -> dict[str, Any]:
    """The first ``count`` held-out questions (of ``questions`` from ``eval_seed``) played greedily by ``checkpoint``."""
    from mgpo_agents.qwen_processor import load_model
    from mgpo_datasets.synthetic import SyntheticTask

    from .episode_picture import draw_episodes, play_episodes
    from .freeform_supervised import freeform_env
    from .position_code import load_task_processor

    task = SyntheticTask(questions, seed=eval_seed, **FREEFORM_TASK)
    indices = range(min(count, questions))
    shown = play_episodes(load_model(checkpoint), load_task_processor(checkpoint), lambda: freeform_env(task), indices)
    title = (f"Trained MGPO ({_repository_relative(str(checkpoint))}): the first {len(shown)} held-out questions (seed {eval_seed}), "
             f"green the target, red the model's box")
    draw_episodes(shown, [f"{task[i].answer}, {task[i].answer_text}" for i in indices], path, title, per_row=3)
    return {"checkpoint": _repository_relative(str(checkpoint)), "questions": list(indices),
            "episodes": [{"question": task[i].question, "replies": t.replies, "correct": bool(t.info.get("correct")),
                          "crop_box": t.info.get("crop_box"), "target_box": t.info.get("target_box")} for i, (_, t) in zip(indices, shown)]}


def episode_rows(output: Path, method: str, seeds: Optional[Sequence[int]], label: str) -> list[dict[str, Any]]:
    """The held-out episode rows of ``method``'s finished runs (of ``seeds`` where given) at evaluation ``label``
    ("before", "after"). Every seed's "before" plays the same weights on the same questions, so it comes from the
    lowest seed only."""
    rows = []
    for _, _, folder in run_folders(output, method, seeds):
        for path in sorted((folder / "eval").glob(f"{label}-step*.jsonl")):
            rows += read_metrics(path)
        if label == "before" and rows:
            break
    return rows


def coverage_section(output: Path, seeds: Optional[Sequence[int]]) -> list[str]:
    """The report's lines on what MGPO's crops held before and after RL (:mod:`emergence.hit_diagnostics`)."""
    from .hit_diagnostics import coverage_markdown

    lines: list[str] = []
    inner = (FREEFORM_TASK["frame_width"], HIT_CAP)
    for label in ("before", "after"):
        rows = episode_rows(output, "mgpo", seeds, label)
        if rows:
            pooled = "the lowest seed's, the same for every seed" if label == "before" else "all seeds pooled"
            lines += [f"MGPO {label} RL, accuracy by what the crop held (episodes; {pooled}):", "", *coverage_markdown(rows, inner=inner), ""]
    if lines:
        lines = ["## What the crops held", "", "A hit needs the whole target inside the crop; the reward needs only the right answer.", "", *lines]
    return lines


def write_report(output: Path, seconds: Optional[float] = None) -> dict[str, Any]:
    """``emergence.json``, ``emergence.md``, ``emergence_curves.png`` and ``emergence_episodes.png`` from the runs on disk
    in ``output`` (the picture loads the trained MGPO weights and plays the first held-out questions again)."""
    settings_path = output / "settings.json"
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    if seconds is None and (output / "emergence.json").exists():  # a redraw keeps the recorded wall time
        seconds = json.loads((output / "emergence.json").read_text()).get("seconds")
    record = results_record(collect_runs(output, settings.get("methods"), settings.get("seeds")))
    if not record:
        raise FileNotFoundError(f"no finished run under {output / 'runs'}")
    fixed = json.loads((output / "fixed_box.json").read_text()) if (output / "fixed_box.json").exists() and "fixed-box" in record else None
    data = {"runs": record, "hit_cap": HIT_CAP, "seconds": seconds, "fixed_box": fixed and fixed["rule"],
            "settings": {k: v for k, v in settings.items() if k != "software"}, "software": settings.get("software")}
    if "checkpoint" in data["settings"]:
        data["settings"]["checkpoint"] = _repository_relative(data["settings"]["checkpoint"])
    trained = trained_mgpo(output, settings.get("seeds"))
    if trained is not None:
        data["episodes"] = episodes_picture(trained, settings.get("eval_seed", FreeformRLSettings.eval_seed),
                                            settings.get("eval_questions", FreeformRLSettings.eval_questions), output / "emergence_episodes.png")
    (output / "emergence.json").write_text(json.dumps(data, indent=2) + "\n")
    plot_curves(record, output / "emergence_curves.png")
    table = results_table(record)
    minutes = f"{seconds / 60:.1f} min" if seconds else "not recorded"
    chosen = data["settings"]
    base = chosen.get("checkpoint", "CKPT")
    start = "" if base == _repository_relative(str(COMMITTED_BASE)) else f" freeform-compare --checkpoint {base}"
    command = (f"python benchmarks/emergence.py{start} --output {_repository_relative(str(output))}"
               + (f" --seeds {' '.join(str(s) for s in chosen['seeds'])}" if chosen.get("seeds") else "")
               + (f" --methods {' '.join(chosen['methods'])}" if chosen.get("methods") else "")
               + (f" --lanes {chosen['lanes']}" if chosen.get("lanes") else ""))
    run_settings = {k: v for k, v in chosen.items() if k in FreeformRLSettings.__dataclass_fields__ and k != "threads"}
    lines = ["# Free-form grounding: MGPO against baselines that could win without it", "",
             "```bash", command + (f" --settings '{json.dumps(run_settings)}'" if run_settings else ""),
             "```", "", "Held-out evaluation (greedy), mean ± std over RL seeds:", "", table, "",
             f"A hit is a crop that holds the target and is at most {HIT_CAP:g}x its side (the leak sweep's reading window). "
             f"Wall time of the comparison: {minutes} ({lanes_text(chosen.get('lanes'))}, one CPU thread each).", ""]
    if fixed:
        lines += [f"The best fixed box, searched on training questions before any run: `{fixed['rule']}`.", ""]
    lines += ["Settings (the same for every method): `" + json.dumps(data["settings"]) + "`", "", "![curves](emergence_curves.png)", ""]
    lines += coverage_section(output, settings.get("seeds"))
    if trained is not None:
        correct = sum(e["correct"] for e in data["episodes"]["episodes"])
        lines += [f"Trained episodes (`{data['episodes']['checkpoint']}`, the first {len(data['episodes']['questions'])} held-out questions, "
                  f"{correct} answered correctly):", "", "![episodes](emergence_episodes.png)", ""]
    (output / "emergence.md").write_text("\n".join(lines))
    print(table, flush=True)
    return data
