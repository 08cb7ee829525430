"""``mgpo demo``: play episodes with scripted policies and save what happened as pictures.

It needs no model: a random-box policy and an oracle-box policy (which boxes the
annotated target) play the same samples, so a new user sees the protocol, the
crops and the grounding metrics in seconds. Outputs, in ``--output``:

* ``episode_<policy>_<k>.png``: the original with the predicted (red) and the
  annotated (green) boxes, the shrunk view the model saw first, and the crop;
* ``target_scales.png``: the target as it appears in the shrunk view (enlarged
  without smoothing so its pixels show) next to the crop;
* ``summary.json``: per policy, valid-box rate, hit rate, mean IoU, accuracy, timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw

from mgpo_env.geometry import contains, iou, original_to_view
from mgpo_env.rendering import TARGET_COLOR, LabelledBox, draw_boxes

from .scripted_policies import OracleBoxPolicy, RandomPolicy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=16, help="episodes per policy (default 16)")
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"), help="folder for pictures and summary.json")
    parser.add_argument("--dataset", default="synthetic", help="dataset spec (default: the built-in synthetic task)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--pictures", type=int, default=3, help="episodes per policy saved as pictures")


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    args.output.mkdir(parents=True, exist_ok=True)
    policies: dict[str, Callable[..., str]] = {"random": RandomPolicy(seed=args.seed), "oracle_box": OracleBoxPolicy(seed=args.seed)}
    summary: dict[str, Any] = {}
    for name, policy in policies.items():
        env = gym.make("mgpo/HighResVQA-v0", dataset=args.dataset, render_mode="rgb_array")
        summary[name] = _play(env, policy, name, args)
        env.close()
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'policy':<12} {'valid box':>9} {'hit':>6} {'IoU':>6} {'accuracy':>9} {'reset ms':>9} {'step ms':>8}")
    for name, row in summary.items():
        print(
            f"{name:<12} {row['valid_box_rate']:>9.2f} {row['hit_rate']:>6.2f} {row['mean_iou']:>6.3f} "
            f"{row['accuracy']:>9.2f} {row['reset_ms']:>9.1f} {row['step_ms']:>8.1f}"
        )
    print(f"\npictures and summary.json written to {args.output}/")
    return 0


def _play(env: gym.Env, policy: Callable[..., str], name: str, args: argparse.Namespace) -> dict[str, Any]:
    valid, hits, ious, correct, reset_times, step_times = [], [], [], [], [], []
    for k in range(args.episodes):
        started = time.perf_counter()
        obs, info = env.reset(seed=args.seed + k)
        reset_times.append(time.perf_counter() - started)
        terminated = False
        grounding_info = None
        while not terminated:
            action = policy(obs, info)
            started = time.perf_counter()
            obs, reward, terminated, _, info = env.step(action)
            step_times.append(time.perf_counter() - started)
            if grounding_info is None and info["protocol"] != "single_turn":
                grounding_info = dict(info)
        valid.append(bool(info["box_valid"]))
        if info["target_box"] is not None:
            crop = info["crop_box"]
            hits.append(crop is not None and contains(crop, info["target_box"]))
            ious.append(iou(crop, info["target_box"]) if crop is not None else 0.0)
        correct.append(bool(info["correct"]))
        if k < args.pictures:
            _episode_picture(env, info).save(args.output / f"episode_{name}_{k}.png")
            if k == 0 and name == "oracle_box" and info["target_box"] is not None:
                _target_scales_picture(env, info).save(args.output / "target_scales.png")
        print(f"[{name}] episode {k + 1}/{args.episodes}: box {'valid' if info['box_valid'] else 'invalid'}, answer {info['answer']}, reward {reward:.0f}", flush=True)
    return {
        "episodes": args.episodes,
        "valid_box_rate": float(np.mean(valid)),
        "hit_rate": float(np.mean(hits)) if hits else float("nan"),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "accuracy": float(np.mean(correct)),
        "reset_ms": 1000 * statistics.median(reset_times),
        "step_ms": 1000 * statistics.median(step_times),
    }


def _panel(images: list[Image.Image], titles: list[str], height: int = 512) -> Image.Image:
    """Images side by side at one height, each with a title above it."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.BOX if im.height > height else Image.Resampling.NEAREST) for im in images]
    width = sum(im.width for im in scaled) + 10 * (len(scaled) + 1)
    canvas = Image.new("RGB", (width, height + 40), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 10
    for im, title in zip(scaled, titles):
        canvas.paste(im, (x, 30))
        draw.text((x, 8), title, fill=(0, 0, 0))
        x += im.width + 10
    return canvas


def _episode_picture(env: gym.Env, info: dict[str, Any]) -> Image.Image:
    base = env.unwrapped
    rendered = Image.fromarray(env.render())
    images = base.chat_images()
    titles = [f"original {info['original_image_size'][0]}x{info['original_image_size'][1]}: predicted (red), annotated (green)", f"view shown first {images[0].width}x{images[0].height}"]
    panels = [rendered, images[0]]
    if len(images) > 1:
        panels.append(images[-1])
        titles.append(f"turn-2 image {images[-1].width}x{images[-1].height}; answer {info['answer']} ({'correct' if info['correct'] else 'wrong'})")
    return _panel(panels, titles)


def _target_scales_picture(env: gym.Env, info: dict[str, Any]) -> Image.Image:
    """The target as the shrunk view shows it (pixels enlarged) next to the crop."""
    base = env.unwrapped
    view = base.chat_images()[0]
    target = original_to_view(info["target_box"], view.size, info["original_image_size"])
    pad = max(target[2] - target[0], target[3] - target[1])
    region = (max(0, int(target[0] - pad)), max(0, int(target[1] - pad)), min(view.width, int(target[2] + pad + 1)), min(view.height, int(target[3] + pad + 1)))
    view_zoom = view.crop(region)
    local = [LabelledBox((target[0] - region[0], target[1] - region[1], target[2] - region[0], target[3] - region[1]), TARGET_COLOR)]
    view_zoom = draw_boxes(view_zoom.resize((view_zoom.width * 16, view_zoom.height * 16), Image.Resampling.NEAREST), [LabelledBox(tuple(v * 16 for v in local[0].box), TARGET_COLOR)], max_side=None)
    tw = info["target_box"][2] - info["target_box"][0]
    titles = [
        f"shrunk view around the target ({tw / (info['original_image_size'][0] / view.width):.0f} view px wide), pixels x16",
        f"the crop the model gets ({base.chat_images()[-1].width}x{base.chat_images()[-1].height})",
    ]
    return _panel([view_zoom, base.chat_images()[-1]], titles)
