"""The environment under load: AsyncVectorEnv workers playing thousands of episodes on real-size JPEGs.

Generates ``--images`` photo-like 4000x3000 JPEGs (quality 90) and a JSONL dataset of
them into a temporary folder, then plays ``--episodes`` two-turn episodes of
``mgpo/HighResVQA-v0`` on ``--workers`` worker processes
(:class:`mgpo_env.vector.SupervisedAsyncVectorEnv` through ``make_vector_env``), each
env driven by its own ``OracleBoxPolicy`` (a box around the annotated target, then
a letter). Every worker has its own :class:`~mgpo_env.image_store.ImageStore`
bounded by ``--cache-mb``. While the episodes run, each worker's resident memory
(``VmRSS``) is sampled; at the end its peak (``VmHWM``, the kernel's high-water mark)
is read. The run fails (exit 1) if a worker died or if any worker's peak grew past
its resident size after the first reset by more than the cache bound plus one
decoded original and its working copies (``--slack-mb``).

Run once, niced (the results file records the command and the numbers)::

    nice -n 10 .venv/bin/python benchmarks/reliability_load.py                 # 8 workers x 2,000 episodes
    .venv/bin/python benchmarks/reliability_load.py --workers 2 --episodes 40  # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

import mgpo_env  # noqa: F401  (registers the environment)
from mgpo_env.vector import make_vector_env
from mgpo_tools.scripted_policies import OracleBoxPolicy

sys.path.insert(0, str(Path(__file__).parent))
from env_throughput import machine, write_images  # noqa: E402  (the same photo-like JPEGs)

MB = 1024 * 1024


def proc_status_kb(pid: int, field: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/PID/status``, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def write_dataset(folder: Path, count: int, size: tuple[int, int], seed: int) -> Path:
    """``count`` JPEGs and a JSONL file with a question and a target box per image."""
    paths = write_images(folder, size, count, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for path in paths:
        side = int(rng.integers(100, 600))
        x, y = int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - side))
        rows.append({"image": path.name, "question": "What colour is the marked object?", "choices": ["red", "green", "blue", "white"],
                     "answer": "A", "boxes": [[x, y, x + side, y + side]]})
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def env_view(observation: dict[str, Any], info: dict[str, Any], i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Env ``i``'s observation and info out of the vector env's batched ones (only the keys it filled)."""
    one_info = {k: v[i] for k, v in info.items() if not k.startswith("_") and info.get("_" + k, np.ones(len(v), bool))[i]}
    return {"turn": observation["turn"][i]}, one_info


def play(data: Path, workers: int, episodes: int, cache_bytes: int, sample_every: int) -> dict[str, Any]:
    envs = make_vector_env(workers, asynchronous=True, vector_kwargs={"timeout": 600}, dataset=f"jsonl:{data}", image_cache_bytes=cache_bytes)
    pids = [p.pid for p in envs.processes]
    policies = [OracleBoxPolicy(seed=i) for i in range(workers)]
    started = time.perf_counter()
    observation, info = envs.reset(seed=0)
    start_rss = [proc_status_kb(pid, "VmRSS") for pid in pids]
    rss_samples: list[list[int]] = [[] for _ in pids]
    finished = ended_truncated = steps = rewards = 0
    pending_reset = [False] * workers  # NEXT_STEP autoreset: the action after a terminal step is ignored
    while finished < episodes:
        actions = []
        for i in range(workers):
            if pending_reset[i]:
                actions.append("")
            else:
                obs_i, info_i = env_view(observation, info, i)
                actions.append(policies[i](obs_i, info_i))
        observation, reward, terminated, truncated, info = envs.step(tuple(actions))
        steps += 1
        for i in range(workers):
            if pending_reset[i]:
                pending_reset[i] = False
                continue
            if terminated[i] or truncated[i]:
                finished += 1
                ended_truncated += int(truncated[i])
                rewards += float(reward[i])
                pending_reset[i] = True
        if steps % sample_every == 0:
            for k, pid in enumerate(pids):
                rss_samples[k].append(proc_status_kb(pid, "VmRSS"))
    seconds = time.perf_counter() - started
    peak = [proc_status_kb(pid, "VmHWM") for pid in pids]
    alive = [p.is_alive() for p in envs.processes]
    envs.close()
    return {
        "episodes": finished, "steps": steps, "seconds": seconds, "truncated": ended_truncated, "reward_mean": rewards / max(finished, 1),
        "start_rss_kb": start_rss, "peak_rss_kb": peak, "median_rss_kb": [int(np.median(s)) if s else 0 for s in rss_samples],
        "workers_alive": sum(alive), "workers": workers,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--images", type=int, default=16, help="distinct JPEGs (more than the caches hold: decodes keep happening)")
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--cache-mb", type=int, default=128, help="each worker's ImageStore bound")
    parser.add_argument("--slack-mb", type=int, default=160, help="allowed on top of the cache: a decoded original, its view, crops, pickled observations")
    parser.add_argument("--sample-every", type=int, default=25, help="steps between RSS samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="mgpo-load-") as folder:
        made = time.perf_counter()
        data = write_dataset(Path(folder), args.images, size, args.seed)  # type: ignore[arg-type]
        print(f"wrote {args.images} JPEGs of {args.size} in {time.perf_counter() - made:.1f} s", flush=True)
        result = play(data, args.workers, args.episodes, args.cache_mb * MB, args.sample_every)
    bound_kb = (args.cache_mb + args.slack_mb) * 1024
    grown = [p - s for p, s in zip(result["peak_rss_kb"], result["start_rss_kb"])]
    within = all(g <= bound_kb for g in grown)
    print(f"machine: {machine()}")
    print(f"{result['episodes']} episodes ({result['steps']} vector steps) on {args.workers} workers in {result['seconds']:.1f} s "
          f"({result['episodes'] / result['seconds']:.1f} episodes/s); truncated {result['truncated']}; mean reward {result['reward_mean']:.3f}")
    print(f"workers alive at the end: {result['workers_alive']} of {result['workers']}")
    print("| worker | RSS after first reset (MB) | median RSS (MB) | peak RSS (MB) | peak - start (MB) |")
    print("|---:|---:|---:|---:|---:|")
    for k in range(args.workers):
        print(f"| {k} | {result['start_rss_kb'][k] / 1024:.0f} | {result['median_rss_kb'][k] / 1024:.0f} | {result['peak_rss_kb'][k] / 1024:.0f} | {grown[k] / 1024:.0f} |")
    print(f"bound on growth: cache {args.cache_mb} MB + slack {args.slack_mb} MB = {bound_kb / 1024:.0f} MB; "
          f"largest growth {max(grown) / 1024:.0f} MB: {'within' if within else 'OVER'} the bound")
    ok = within and result["workers_alive"] == args.workers and result["episodes"] >= args.episodes
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
