"""Pictures of greedy held-out episodes: the model's box and the annotated target on the view, then the crop.

Both versions of the miniature draw their trained episodes with :func:`draw_episodes`; the
caller chooses which questions (the free-form report shows the first held-out questions in
order, hits and misses alike, so the picture is a sample rather than a selection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from mgpo_agents.trajectory import Trajectory

from .experiment import greedy_evaluation

TARGET_COLOUR, BOX_COLOUR = "lime", "red"


def play_episodes(model: Any, processor: Any, make_env: Callable[[], Any], indices: Sequence[int]) -> list[tuple[list[Any], Trajectory]]:
    """Greedy episodes of ``indices`` with the images each showed the model (view first, then the crop)."""
    shown: list[tuple[list[Any], Trajectory]] = []
    greedy_evaluation(model, processor, make_env, indices, on_episode_end=lambda env, episode: shown.append((env.unwrapped.chat_images(), episode)))
    return shown


def episode_caption(trajectory: Trajectory, truth: str) -> str:
    """One line on how an episode went.

    >>> from types import SimpleNamespace
    >>> episode_caption(SimpleNamespace(replies=["[1,2,3,4]", "B"], info={"correct": False}), "C")
    "reply 'B': wrong (truth C)"
    """
    return f"reply {trajectory.replies[-1]!r}: {'correct' if trajectory.info.get('correct') else 'wrong'} (truth {truth})"


def draw_episodes(shown: Sequence[tuple[list[Any], Trajectory]], truths: Sequence[str], path: Path, title: str, per_row: int = 2) -> Path:
    """Each episode as two panels (view with the model's box and the target; the crop), ``per_row`` episodes a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if not shown:
        raise ValueError("no episodes to draw")
    if len(truths) != len(shown):
        raise ValueError(f"{len(shown)} episodes but {len(truths)} true answers")
    per_row = min(per_row, len(shown))
    rows = -(-len(shown) // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(5 * per_row, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, ((images, trajectory), truth) in enumerate(zip(shown, truths)):
        view_ax, crop_ax = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        info, view = trajectory.info, images[0]
        view_ax.imshow(view)
        scale = view.width / info["original_image_size"][0]
        for box, colour, label in ((info.get("target_box"), TARGET_COLOUR, "target"), (info.get("crop_box"), BOX_COLOUR, "model's box")):
            if box:
                x1, y1, x2, y2 = (v * scale for v in box)
                view_ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.6, label=label))
        view_ax.set_title(f"turn 1: {trajectory.replies[0]!r}"[:60], fontsize=7)
        if len(images) > 1:
            crop_ax.imshow(images[1])
        else:
            crop_ax.text(0.5, 0.5, "no crop\n(no valid box)", ha="center", va="center", fontsize=8)
        crop_ax.set_title(episode_caption(trajectory, truth)[:60], fontsize=7)
    legend: dict[str, Any] = {}
    for ax in axes.flat:  # an episode without a valid box has no "model's box" to show
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
