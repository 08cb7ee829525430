"""Training curves as a PNG: the figures a person looks at first."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from mgpo_tools.metrics import read_metrics

PANELS: tuple[tuple[str, ...], ...] = (
    ("reward_mean", "accuracy"),
    ("valid_box_rate", "hit_rate", "mean_iou"),
    ("kl",),
    ("entropy",),
    ("clip_fraction", "zero_advantage_groups"),
    ("reply1_tokens", "reply2_tokens"),
    ("time_generation", "time_environment", "time_learning"),
    ("mean_crop_fraction",),
)


def plot_metrics(metrics_path: Path, output: Path, panels: Sequence[Sequence[str]] = PANELS) -> Path:
    """Draw every panel whose metrics exist in ``metrics_path`` into ``output`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    present = [p for p in panels if any(any(isinstance(r.get(k), (int, float)) for r in rows) for k in p)]
    if not rows or not present:
        raise ValueError(f"{metrics_path} has no metrics to plot")
    cols = 4
    lines = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4 * cols, 3 * lines), squeeze=False)
    steps = [r.get("step", i + 1) for i, r in enumerate(rows)]
    for ax, panel in zip(axes.flat, present):
        for key in panel:
            values = [r.get(key, float("nan")) for r in rows]
            values = [v if isinstance(v, (int, float)) else float("nan") for v in values]
            ax.plot(steps, values, marker="o" if len(rows) < 30 else None, markersize=3, label=key)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return Path(output)
