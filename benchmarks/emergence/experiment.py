"""The paper's experiment in miniature: grounding emerging from a binary answer reward, on CPU.

MGPO's claim is that a VLM learns *where to look* from nothing but a reward for
the final answer. This module reproduces it with the project's tiny
Qwen2.5-VL on the synthetic task, in stages that each end with a measured gate:

1. **Base abilities** (supervised, the stand-in for a VLM's pretraining):
   *reading*: answer the task's question from a crop that contains the target
   (the turn-1 box the conversation shows is a random cell, so no training text
   pairs the target's position with anything); *generic grounding*: box a named
   object (:class:`grounding_task.GroundingTask`: no black frame, no
   checkered patch). Grounding comes first, alone, on one large uncluttered
   object (stage 1a, *bootstrap*): a tiny transformer learns "where" only after
   a plateau of a few hundred steps, and the plateau ends sooner and more surely
   on easy data at a constant rate. Then reading and general grounding (two
   named objects among clutter) train together (stage 1b). Both stages stop at
   their measured gates: bootstrap hit rate >= 0.9; reading accuracy on oracle
   crops >= 0.9 and generic grounding hit rate >= 0.8, the latter on held-out
   questions with one named object among the general set's clutter (the
   ability "to ground at all" that the base model needs). Choosing between
   *two* named objects by the question's words is measured beside it at every
   check, as a diagnostic (see :func:`gate_metrics`). A control trains the same
   model on global views with the true answers: it stays at chance, because the
   attribute is invisible there by construction.
2. **Format warm-start**: turn-1 boxes in the right format but random cells
   (independent of the image), single-turn answers as random letters, plus
   rehearsal of stage 1. No annotated box of the task is used anywhere.
3. **RL**: MGPO (two turns) and GRPO (single turn, no crop) from the same
   warm-start checkpoint, same hyperparameters and sample budget, several seeds.
4. **Evaluation** on held-out questions never seen in training, before, during
   and after RL: accuracy, valid-box rate, crop hit rate and IoU.

This is the *cell version*, superseded by the free-form experiment (its boxes were one of
four cells; ``benchmarks/results/emergence_cell.md`` and the audit on the probes page). Run
it with ``python benchmarks/emergence.py cell`` (``--quick`` for one seed each and fewer
steps); the command line is :mod:`emergence.commands`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch

import mgpo_env  # noqa: F401  (registers the environment)
from mgpo_env.geometry import contains
from mgpo_env.image_budget import ImageBudget
from mgpo_env.image_store import ImageStore
from mgpo_env.scripted_turn import box_reply

from mgpo_agents.config import EMERGENCE_EVAL_SEED, EMERGENCE_TASK, EMERGENCE_TEMPLATES, EMERGENCE_TRAIN_SEED, PRESETS
from mgpo_agents.qwen_processor import load_model
from mgpo_agents.rollout import RolloutEngine
from mgpo_agents.supervised import fit, reply_ids, scripted_trajectory
from mgpo_agents.trajectory import ConversationTokenizer, Trajectory

from .forced_replies import ForcedReplies
from .position_code import PositionCodedImageProcessor, load_task_processor

# ----------------------------------------------------------------- the task
# The task's settings live in the library's "emergence" preset (`mgpo train --preset emergence`),
# so that the preset and this experiment cannot drift apart.
EMERGENCE = PRESETS["emergence"]
TASK_KWARGS: dict[str, Any] = EMERGENCE_TASK
CANVAS = TASK_KWARGS["canvas_size"]  # original pixels; the view is 224 (4x smaller), a crop of one cell 224 (2x smaller)
CELLS = TASK_KWARGS["cells"]  # the box vocabulary: one of 2 x 2 cells of the view
VIEW = 224
MIN_PIXELS, MAX_PIXELS = EMERGENCE["min_pixels"], EMERGENCE["max_pixels"]
CELL_BUDGET = ImageBudget(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)  # every image of the cell version: view and crop

# Generic grounding, in two levels (never the task's frame or checker; see GroundingTask):
# the bootstrap set (one large object, no clutter) is where the ability to say *where* first
# appears; the general set (two named objects, clutter, task-sized objects) is stage 1b's
# training data. The grounding gate holds out one named object among the same clutter and
# sizes; held-out two-object questions measure the choice between named objects.
GROUNDING_BOOTSTRAP_KWARGS: dict[str, Any] = dict(canvas_size=CANVAS, cells=CELLS, objects=1, object_size=(200, 220), clutter=0)
GROUNDING_KWARGS: dict[str, Any] = dict(canvas_size=CANVAS, cells=CELLS, objects=2, object_size=(96, 192), clutter=12)

TEMPLATES: dict[str, str] = EMERGENCE_TEMPLATES
ENV_KWARGS: dict[str, Any] = EMERGENCE["env_kwargs"]

# The longest reply, "[112,112,224,224]", is 17 tokens plus the end-of-turn token: leave room.
MAX_NEW_TOKENS = 24

# The checkout this experiment lies in (benchmarks/emergence/): committed checkpoints and results live here.
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]

# Torch threads of each RL run, evaluation and gate measurement: runs go in parallel lanes, one core each.
RUN_THREADS = 1

# Disjoint dataset seeds: training questions, held-out evaluation, and the supervised stages.
TRAIN_SEED, EVAL_SEED, GROUNDING_SEED, GROUNDING_EVAL_SEED = EMERGENCE_TRAIN_SEED, EMERGENCE_EVAL_SEED, 2, 3


def make_env(dataset: Any, protocol: str = "two_turn", store: Optional[ImageStore] = None, budget: ImageBudget = CELL_BUDGET,
             **dataset_kwargs: Any) -> gym.Env:
    """A HighResVQA-v0 environment with the miniature's prompts and layout, at ``budget`` (the cell version's by default)."""
    return gym.make(
        "mgpo/HighResVQA-v0",
        dataset=dataset,
        dataset_kwargs=dataset_kwargs or None,
        protocol=protocol,
        min_pixels=budget.min_pixels,
        max_pixels=budget.max_pixels,
        box_frame="pixel",
        image_store=store or ImageStore(),
        **ENV_KWARGS,
    )


def cell_box_text(column: int, row: int) -> str:
    """The reply that boxes one cell of the view in view pixels, the way the warm-start teaches.

    >>> cell_box_text(1, 0)
    '[112,0,224,112]'
    """
    side = VIEW // CELLS
    return box_reply((column * side, row * side, (column + 1) * side, (row + 1) * side), "pixel", (VIEW, VIEW))


# The cells in row-major order: the index of a cell in score tables such as box_tilt's.
CELL_ORDER = [(column, row) for row in range(CELLS) for column in range(CELLS)]


def cell_of(box: Sequence[float], canvas: int = CANVAS) -> tuple[int, int]:
    """``(column, row)`` of the cell holding the top-left corner of an original-pixel box."""
    side = canvas // CELLS
    return int(box[0] // side), int(box[1] // side)


def answer_text(letter: str) -> str:
    return f"\\boxed{{{letter}}}"


# ------------------------------------------------------------- the model
def build_base_model(path: Path, seed: int = 0) -> Path:
    """The tiny Qwen2.5-VL of the miniature: 1.7M parameters, random weights."""
    from mgpo_agents.tiny_model import QWEN25VL_IMAGE_SETTINGS, build_tiny_qwen25vl

    build_tiny_qwen25vl(path, seed=seed, text_hidden=128, text_layers=3, vision_depth=3, vision_hidden=128, rope_theta=4.0)
    processor = load_task_processor(path)
    processor.image_processor = PositionCodedImageProcessor(position_code=POSITION_CODE, **QWEN25VL_IMAGE_SETTINGS)
    processor.save_pretrained(path)
    processor.image_processor.save_pretrained(path)
    return path


# Amplitude of the processor's 2-D position code (see PositionCodedImageProcessor); 0 turns it off.
# Probes with 1 and 10 did not teach grounding and slowed reading down (benchmarks/results/emergence_probes.md).
POSITION_CODE = 0.0


# ------------------------------------------------------- supervised examples
class ExampleMaker:
    """Scripted, token-exact training conversations for the supervised stages."""

    def __init__(self, processor: Any, task_seed: int = TRAIN_SEED, task_size: int = 4000) -> None:
        from .grounding_task import GroundingTask
        from mgpo_datasets.synthetic import SyntheticTask

        self.tokens = ConversationTokenizer(processor)
        self.task = SyntheticTask(task_size, seed=task_seed, **TASK_KWARGS)
        self.grounding = GroundingTask(task_size, seed=GROUNDING_SEED, **GROUNDING_KWARGS)
        self.bootstrap = GroundingTask(task_size, seed=GROUNDING_SEED + 10, **GROUNDING_BOOTSTRAP_KWARGS)
        store = ImageStore(256 * 2**20)
        self.two_turn = make_env(self.task, store=store)
        self.single_turn = make_env(self.task, "single_turn", store=store)
        self.grounding_envs = {"general": make_env(self.grounding, store=store), "bootstrap": make_env(self.bootstrap, store=store)}

    def _random_cell(self, rng: random.Random) -> str:
        return cell_box_text(rng.randrange(CELLS), rng.randrange(CELLS))

    def reading(self, index: int, rng: random.Random) -> Trajectory:
        """Answer from a crop that holds the target; the box the conversation shows is a random cell.

        The environment acts on a box around the target (its cell, or a tighter box for
        a larger view of it), but the turn-1 ids are those of a random cell, and only
        the answer carries loss: nothing pairs the target's position with any text.
        """
        sample = self.task[index]
        x1, y1, x2, y2 = sample.target_box  # type: ignore[misc]
        scale = VIEW / CANVAS
        if rng.random() < 0.5:
            acted = cell_box_text(*cell_of(sample.target_box))  # type: ignore[arg-type]
        else:  # a tighter box: the target fills more of the crop
            margin = rng.uniform(8, 32)
            box = (max(0, int(x1 * scale - margin)), max(0, int(y1 * scale - margin)), min(VIEW, int(x2 * scale + margin + 1)), min(VIEW, int(y2 * scale + margin + 1)))
            acted = box_reply(box, "pixel", (VIEW, VIEW))
        return scripted_trajectory(
            self.tokens, self.two_turn, index, [acted, answer_text(sample.answer)], train_turns=[1], shown_replies=[self._random_cell(rng), None]
        )

    def grounding_row(self, index: int, level: str = "general") -> Trajectory:
        """Box the named object's cell (generic grounding, never the task's target); ``level``: general or bootstrap."""
        env = self.grounding_envs[level]
        sample = env.unwrapped.dataset[index]
        return scripted_trajectory(self.tokens, env, index, [cell_box_text(*cell_of(sample.target_box))], train_turns=[0])  # type: ignore[arg-type]

    def format_row(self, index: int, rng: random.Random) -> Trajectory:
        """The task's turn 1 answered with a random cell (format only: independent of the image)."""
        return scripted_trajectory(self.tokens, self.two_turn, index, [self._random_cell(rng)], train_turns=[0])

    def single_turn_row(self, index: int, rng: random.Random, *, true_answer: bool = False) -> Trajectory:
        """The single-turn question answered with a random letter (format), or the true one (control)."""
        sample = self.task[index]
        letter = sample.answer if true_answer else string.ascii_uppercase[rng.randrange(len(sample.choices))]
        return scripted_trajectory(self.tokens, self.single_turn, index, [answer_text(letter)], train_turns=[0])


def example_pool(make: Callable[[int], Trajectory], indices: Sequence[int], description: str, progress: bool = True) -> list[Trajectory]:
    """Build a list of training conversations once (rendering and tokenising dominate otherwise)."""
    from tqdm.auto import tqdm

    return [make(i) for i in tqdm(indices, desc=description, disable=not progress, dynamic_ncols=True)]


# -------------------------------------------------------------- measurements
def attribute_leak_check(layouts: int = 20) -> dict[str, float]:
    """Render layouts with each of the four answers: max pixel difference in the view and in the cell crop.

    0 in the view means the global view carries no information about the answer at all.
    """
    from dataclasses import replace

    from mgpo_env.image_budget import resize_image
    from mgpo_datasets.synthetic import COLOUR_PAIRS, SyntheticTask, render_layout

    task = SyntheticTask(layouts, seed=EVAL_SEED + 200, **TASK_KWARGS)
    view_diff, crop_diff = 0.0, 0.0
    for i in range(layouts):
        layout = task[i].image.layout
        side = CANVAS // CELLS
        column, row = cell_of(layout.boxes[0])
        cell = (column * side, row * side, (column + 1) * side, (row + 1) * side)
        views, crops = [], []
        for pair in COLOUR_PAIRS:
            image = render_layout(task, replace(layout, answer_value=pair))
            views.append(np.asarray(resize_image(image, CELL_BUDGET.view_size(image.size)), dtype=int))
            crop = image.crop(cell)
            crops.append(np.asarray(resize_image(crop, CELL_BUDGET.view_size(crop.size)), dtype=int))
        view_diff = max(view_diff, max(float(np.abs(v - views[0]).max()) for v in views))
        crop_diff = max(crop_diff, max(float(np.abs(c - crops[0]).max()) for c in crops))
    return {"layouts": layouts, "view_max_difference": view_diff, "crop_max_difference": crop_diff}

def greedy_evaluation(
    model: Any,
    processor: Any,
    env_maker: Callable[[], gym.Env],
    indices: Sequence[int],
    *,
    forced_first: Optional[Callable[[int], str]] = None,
    on_episode_end: Optional[Callable[[gym.Env, Trajectory], None]] = None,
) -> dict[str, Any]:
    """Greedy episodes summarised by :func:`mgpo_agents.evaluation.evaluate` (accuracy, valid-box and hit rates).

    ``forced_first(sample_index)`` makes turn 1 say the given text (an oracle box, for diagnostics).
    """
    from mgpo_agents.evaluation import evaluate

    tokens = ConversationTokenizer(processor)
    forcing = None
    if forced_first is not None:
        def forcing(trajectories: Sequence[Trajectory], turn: int) -> list:
            if turn != 0:
                return []
            width = max(len(t.input_ids) for t in trajectories)
            return [ForcedReplies([reply_ids(tokens, forced_first(t.sample_index)) for t in trajectories], width)]
    engine = RolloutEngine(model, processor, env_maker, max_new_tokens=MAX_NEW_TOKENS, extra_logits_processors=forcing)
    model.eval()
    return evaluate(engine, list(indices), batch_questions=50, progress=False, on_episode_end=on_episode_end)


def reading_accuracy(model: Any, processor: Any, task: Any, indices: Sequence[int]) -> float:
    """Greedy answer accuracy when turn 1 is forced to the target's cell (an oracle crop; a diagnostic only)."""
    oracle = lambda i: cell_box_text(*cell_of(task[i].target_box))  # noqa: E731
    return greedy_evaluation(model, processor, lambda: make_env(task), indices, forced_first=oracle)["accuracy"]


def grounding_hit_rate(model: Any, processor: Any, grounding: Any, indices: Sequence[int]) -> float:
    """Share of held-out generic grounding questions whose greedy box holds the named object."""
    return greedy_evaluation(model, processor, lambda: make_env(grounding), indices)["hit_rate"]


def boxed_object(box: Optional[Sequence[float]], named_boxes: Sequence[Sequence[float]]) -> str:
    """Which named object a crop box holds: ``"asked"`` (the first of ``named_boxes``), ``"other"`` or ``"neither"``.

    A box that holds the asked object counts as ``"asked"`` even if it holds others too; ``None``
    (an invalid box, nothing cropped) is ``"neither"``.

    Example:
        >>> boxed_object((0, 0, 100, 100), [(10, 10, 50, 50), (300, 300, 360, 360)])
        'asked'
    """
    if box is None:
        return "neither"
    if contains(box, named_boxes[0]):
        return "asked"
    return "other" if any(contains(box, b) for b in named_boxes[1:]) else "neither"


def grounding_choices(model: Any, processor: Any, grounding: Any, indices: Sequence[int]) -> dict[str, Any]:
    """Where the greedy boxes land on generic grounding questions with several named objects.

    Returns the counts of boxes on the asked object, on another named object and on
    neither, and per cell ``"column,row"`` the share of questions with a named object
    there whose box went to that object. A model that finds named objects but does not
    read which one the question asks has few "neither", and cell shares that show its
    own preference instead of about 1/objects each.
    """
    counts = {"asked": 0, "other": 0, "neither": 0}
    present: dict[str, int] = {}
    chosen: dict[str, int] = {}

    def note(env: gym.Env, episode: Trajectory) -> None:
        named = grounding[episode.sample_index].metadata["named_boxes"]
        box = episode.info.get("crop_box")
        counts[boxed_object(box, named)] += 1
        for b in named:
            cell = "{},{}".format(*grounding.cell_of(b))
            present[cell] = present.get(cell, 0) + 1
            if box is not None and contains(box, b):
                chosen[cell] = chosen.get(cell, 0) + 1

    greedy_evaluation(model, processor, lambda: make_env(grounding), indices, on_episode_end=note)
    return {**counts, "chosen_share_by_cell": {c: round(chosen.get(c, 0) / present[c], 3) for c in sorted(present)}}


def single_turn_accuracy(model: Any, processor: Any, task: Any, indices: Sequence[int]) -> float:
    return greedy_evaluation(model, processor, lambda: make_env(task, "single_turn"), indices)["accuracy"]


def task_episode_metrics(model: Any, processor: Any, task: Any, indices: Sequence[int], protocol: str = "two_turn") -> dict[str, float]:
    """Greedy held-out episodes of the task: accuracy, valid-box rate, hit rate, mean IoU."""
    summary = greedy_evaluation(model, processor, lambda: make_env(task, protocol), indices)
    return {k: summary[k] for k in ("accuracy", "valid_box_rate", "hit_rate", "mean_iou")}


def turn1_cell_probabilities(model: Any, processor: Any, task: Any, indices: Sequence[int]) -> np.ndarray:
    """``P(reply 1 = the box of cell c)`` for each question and cell (row-major), teacher-forced.

    Each cell's box text is scored as the model would generate it (its ids and the
    end-of-turn token); a row sums to the mass the model puts on the cell boxes.
    """
    from mgpo_agents.mgpo_loss import pack, token_logprobs

    tokens = ConversationTokenizer(processor)
    env = make_env(task)
    parameter = next(model.parameters())
    model.eval()
    rows = []
    with torch.no_grad():
        for index in indices:
            scripted = [scripted_trajectory(tokens, env, index, [cell_box_text(*cell)], train_turns=[0]) for cell in CELL_ORDER]
            batch = pack(scripted, processor.tokenizer.pad_token_id, tokens.image_token_id, parameter.device, parameter.dtype)
            logp, _ = token_logprobs(model, batch)
            per_cell = torch.zeros(len(CELL_ORDER), device=logp.device).index_add_(0, batch.token_rows, logp.float())
            rows.append(per_cell.exp().cpu().numpy())
    return np.stack(rows)


def box_tilt(probabilities: np.ndarray, target_cells: Sequence[int]) -> dict[str, float]:
    """How much a turn-1 box policy leans towards the target's cell, beyond what ignoring the image gives.

    ``probabilities``: (questions, cells) from :func:`turn1_cell_probabilities`, renormalised
    here over the cells; ``target_cells``: each question's target cell (row-major index).
    ``p_target`` is the mean probability of the target's cell; ``p_target_if_blind`` what a
    policy with the same mean distribution that ignored the image would give on these
    questions; ``tilt`` their difference. It says where MGPO starts: the more the sampled
    boxes lean towards the target, the more groups hold a rewarded crop from the first
    steps (the warm-start's tilt is in its stage record, ``supervised.json``).
    ``image_dependence`` is the mean total-variation distance of a question's distribution
    from the mean one (0: the box ignores the image).

    Example:
        >>> box_tilt(np.array([[1.0, 0.0], [0.0, 1.0]]), [0, 1])["tilt"]   # always boxes the target
        0.5
        >>> box_tilt(np.array([[0.5, 0.5], [0.5, 0.5]]), [0, 1])["tilt"]   # ignores the image
        0.0
    """
    p = np.asarray(probabilities, dtype=float)
    targets = np.asarray(target_cells, dtype=int)
    mass = p.sum(1)
    q = p / mass[:, None]
    mean = q.mean(0)
    target_share = np.bincount(targets, minlength=q.shape[1]) / len(targets)
    p_target = float(q[np.arange(len(q)), targets].mean())
    blind = float(mean @ target_share)
    return {
        "p_target": round(p_target, 4),
        "p_target_if_blind": round(blind, 4),
        "tilt": round(p_target - blind, 4),
        "image_dependence": round(float(0.5 * np.abs(q - mean).sum(1).mean()), 4),
        "mass_on_cell_boxes": round(float(mass.mean()), 4),
    }


def task_box_tilt(model: Any, processor: Any, task: Any, indices: Sequence[int]) -> dict[str, float]:
    """:func:`box_tilt` of a model's turn-1 boxes on task questions."""
    targets = [CELL_ORDER.index(cell_of(task[i].target_box)) for i in indices]
    return box_tilt(turn1_cell_probabilities(model, processor, task, indices), targets)


def gate_sets(questions: int) -> tuple[Any, Any]:
    """The gates' held-out questions: task questions (not the RL evaluation set) and generic grounding ones
    (:func:`one_object_set`)."""
    from mgpo_datasets.synthetic import SyntheticTask

    return SyntheticTask(questions, seed=EVAL_SEED + 100, **TASK_KWARGS), one_object_set(questions)


def one_object_set(questions: int) -> Any:
    """The grounding gate's held-out questions: one named object among the general set's clutter.

    "Where is the purple triangle?" on a canvas with the task's clutter (unnamed shapes
    in muted colours) and the general set's object sizes: a model that says where the
    named object is scores 1, one whose boxes ignore the image about 1/4.
    """
    from .grounding_task import GroundingTask

    return GroundingTask(questions, seed=GROUNDING_EVAL_SEED + 40, **dict(GROUNDING_KWARGS, objects=1))


def choice_set(questions: int) -> Any:
    """Held-out two-object questions (the general training set's kind): the question picks one of two named objects."""
    from .grounding_task import GroundingTask

    return GroundingTask(questions, seed=GROUNDING_EVAL_SEED, **GROUNDING_KWARGS)


def bootstrap_set(questions: int) -> Any:
    """Held-out questions of the bootstrap grounding level (one large object, no clutter)."""
    from .grounding_task import GroundingTask

    return GroundingTask(questions, seed=GROUNDING_EVAL_SEED + 10, **GROUNDING_BOOTSTRAP_KWARGS)


def gate_metrics(model: Any, processor: Any, questions: int, *, diagnostics: bool = False) -> dict[str, Any]:
    """The gates' measurements on their held-out sets, and the two-object choice beside them.

    ``reading_accuracy``: answers on oracle crops (gate); ``grounding_hit_rate``: boxes
    holding the one named object among clutter (gate); ``choice_hit_rate``: boxes holding
    the asked one of two named objects (a diagnostic, not a gate: the task has one
    target, and RL does not need the choice; see benchmarks/results/emergence_probes.md).
    With ``diagnostics``, also ``"diagnostics"``: where the two-object boxes land
    (:func:`grounding_choices`; ``choice_hit_rate`` is then its share of boxes on the asked
    object, from the same greedy episodes) and how the turn-1 boxes lean towards the
    task's target (:func:`task_box_tilt`).
    """
    held_task, held_grounding = gate_sets(questions)
    metrics: dict[str, Any] = {
        "reading_accuracy": reading_accuracy(model, processor, held_task, range(questions)),
        "grounding_hit_rate": grounding_hit_rate(model, processor, held_grounding, range(questions)),
    }
    if not diagnostics:
        metrics["choice_hit_rate"] = grounding_hit_rate(model, processor, choice_set(questions), range(questions))
        return metrics
    choices = grounding_choices(model, processor, choice_set(questions), range(questions))
    metrics["choice_hit_rate"] = choices["asked"] / questions
    metrics["diagnostics"] = {
        "choice_boxes": choices,
        "task_box_tilt": task_box_tilt(model, processor, held_task, range(questions)),
    }
    return metrics


def software_record() -> dict[str, Any]:
    """The library versions and torch threads a run used.

    A CPU run repeats to the digit only with the same libraries and thread count: the
    supervised stages rerun under transformers 5.25 matched a 5.24 record's losses to
    four digits at steps 100 and 125 and parted from step 150 on
    (benchmarks/results/emergence_probes.md, eighth round). Stage records carry this so a
    mismatch can be told from a bug.
    """
    import platform

    import PIL
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def measure_gates(checkpoint: Path, questions: int = 150) -> dict[str, Any]:
    """:func:`gate_metrics` of a saved model, with its diagnostics."""
    torch.set_num_threads(RUN_THREADS)
    return gate_metrics(load_model(checkpoint), load_task_processor(checkpoint), questions, diagnostics=True)


# -------------------------------------------------------------------- stages
@dataclass
class StageSettings:
    """Supervised stage sizes (the defaults are the committed run's).

    Both base stages are *gated*: they train at a constant learning rate until
    their held-out gate is met (measured every ``check_every`` steps) or their
    step limit is reached. Small transformers learn "where" abruptly after a
    plateau of a few hundred steps whose length varies from seed to seed, so a
    fixed step count would either stop on the plateau or waste time after it.
    """

    pool: int = 1200  # conversations built per kind (reused across steps)
    bootstrap_max_steps: int = 800  # stage 1a: bootstrap grounding only
    bootstrap_gate: float = 0.9  # hit rate on held-out bootstrap questions
    base_max_steps: int = 1600  # stage 1b: reading + general grounding (+ bootstrap rehearsal)
    check_every: int = 100
    warmstart_steps: int = 100
    control_steps: int = 150
    batch: int = 32
    learning_rate: float = 1e-3  # bootstrap and control (the warm-start uses a third of it)
    base_learning_rate: float = 5e-4  # stage 1b: at 1e-3 the mixture undid the bootstrap's grounding within 100 steps
    gate_questions: int = 150
    reading_gate: float = 0.9
    grounding_gate: float = 0.8


def _save(model: Any, processor: Any, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    processor.image_processor.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def _mixed_batches(pools: Sequence[list[Trajectory]], shares: Sequence[int], seed: int) -> Callable[[int], list[Trajectory]]:
    rng = random.Random(seed)
    return lambda step: [t for pool, k in zip(pools, shares) for t in rng.sample(pool, k)]


def _resumable(stage_dir: Path, keys: Sequence[str], model: Any, processor: Any, report: dict[str, Any], run: Callable[[], dict[str, Any]]) -> Any:
    """Run a supervised stage once: its weights and ``stage_dir/<name>.json`` record stay on disk, and a
    rerun loads them instead of training again. Returns the model to continue with."""
    record = stage_dir / f"{stage_dir.name}.json"
    if record.exists():
        print(f"[{stage_dir.name}] reusing {stage_dir}", flush=True)
        report.update(json.loads(record.read_text()))
        return load_model(stage_dir)
    report.update(run())
    _save(model, processor, stage_dir)
    record.write_text(json.dumps({k: report[k] for k in keys}, indent=2) + "\n")
    return model


def _bootstrap_stage(model: Any, processor: Any, maker: ExampleMaker, rows: list[Trajectory], held: Any,
                     measure: Callable[[str], dict[str, float]], settings: StageSettings, seed: int, progress: bool) -> dict[str, Any]:
    """Stage 1a: bootstrap grounding rows only, constant rate, until the held-out hit rate reaches the gate."""
    gates = range(settings.gate_questions)
    bootstrap_curve: list[dict[str, float]] = []

    def bootstrap_check(step: int, loss: float) -> bool:
        if (step + 1) % max(1, settings.check_every // 4) or step + 1 < settings.check_every:
            return False
        hit = grounding_hit_rate(model, processor, held, gates)
        bootstrap_curve.append({"step": step + 1, "loss": loss, "bootstrap_hit_rate": hit})
        print(f"[bootstrap step {step + 1}] loss {loss:.4f}, bootstrap grounding hit rate {hit:.3f}", flush=True)
        model.train()
        return hit >= settings.bootstrap_gate

    fit(model, maker.tokens, _mixed_batches([rows], [settings.batch], seed), steps=settings.bootstrap_max_steps, schedule="constant",
        learning_rate=settings.learning_rate, pad_id=processor.tokenizer.pad_token_id, warmup_steps=10, on_step=bootstrap_check,
        progress=progress, description="bootstrap grounding")
    return {"bootstrap_curve": bootstrap_curve, "bootstrap": measure("bootstrap")}


def _base_stage(model: Any, maker: ExampleMaker, reading: list[Trajectory], grounding: list[Trajectory], bootstrap: list[Trajectory],
                measure: Callable[[str], dict[str, float]], settings: StageSettings, seed: int, progress: bool) -> dict[str, Any]:
    """Stage 1b: reading + general grounding + bootstrap rehearsal until both gates; loads the best-checked weights."""
    curve: list[dict[str, float]] = []
    report: dict[str, Any] = {}
    best: dict[str, Any] = {"score": -1.0}

    def base_check(step: int, loss: float) -> bool:
        if (step + 1) % settings.check_every:
            return False
        row = {"step": step + 1, "loss": loss, **measure(f"base step {step + 1}")}
        curve.append(row)
        score = min(row["reading_accuracy"] / settings.reading_gate, row["grounding_hit_rate"] / settings.grounding_gate)
        if score > best["score"]:
            best.update(score=score, row=row, weights={k: v.detach().clone() for k, v in model.state_dict().items()})
        model.train()
        return score >= 1.0

    half, quarter = settings.batch // 2, settings.batch // 4
    fit(model, maker.tokens, _mixed_batches([reading, grounding, bootstrap], [half, quarter, quarter], seed + 1),
        steps=settings.base_max_steps, schedule="constant", learning_rate=settings.base_learning_rate,
        pad_id=maker.tokens.tokenizer.pad_token_id, warmup_steps=20,
        on_step=base_check, progress=progress, description="base abilities")
    report["base_curve"] = curve
    if "weights" in best:
        model.load_state_dict(best["weights"])
        report["base"] = dict(best["row"])
    else:
        report["base"] = measure("base")
    report["gates"] = gate_verdicts(report["base"], settings)
    return report


def gate_verdicts(row: dict[str, Any], settings: StageSettings) -> dict[str, bool]:
    """Whether a stage-1b measurement meets each gate, keyed by the gate's rule."""
    return {
        f"reading_accuracy>={settings.reading_gate}": row["reading_accuracy"] >= settings.reading_gate,
        f"grounding_hit_rate>={settings.grounding_gate}": row["grounding_hit_rate"] >= settings.grounding_gate,
    }


def train_base_and_warmstart(output: Path, settings: StageSettings, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Stages 1 and 2: base abilities with their gates, the global-view control, the warm-start.

    1a. *Bootstrap grounding*: one large named object, no clutter, until the held-out
        hit rate reaches ``bootstrap_gate``: the ability to say where something is.
    1b. *Base*: reading rows, general grounding rows (two named objects among
        clutter) and bootstrap rehearsal, until both gates are met.
    2.  *Warm-start*: the task's formats with random boxes and random letters.

    Writes ``output/base``, ``output/warmstart`` (the checkpoint RL starts from) and
    ``output/supervised.json`` with every gate's measurement.
    """
    torch.manual_seed(seed)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    base_dir = build_base_model(output / "random_init", seed=seed)
    processor = load_task_processor(base_dir)
    model = load_model(base_dir)
    pad = processor.tokenizer.pad_token_id
    n = settings.pool
    maker = ExampleMaker(processor, task_size=4 * n)  # four disjoint pools of task questions (reading, control, format, single-turn)
    rng = random.Random(seed)
    bootstrap = example_pool(lambda i: maker.grounding_row(i, "bootstrap"), range(n), "bootstrap grounding rows", progress)
    reading = example_pool(lambda i: maker.reading(i, rng), range(n), "reading rows", progress)
    grounding = example_pool(maker.grounding_row, range(n), "grounding rows", progress)
    held_task, _ = gate_sets(settings.gate_questions)
    held_bootstrap = bootstrap_set(settings.gate_questions)
    gates = range(settings.gate_questions)
    report: dict[str, Any] = {"settings": asdict(settings), "seed": seed, "software": software_record(), "leak_check": attribute_leak_check()}
    print(f"[leak check] {report['leak_check']}", flush=True)

    def measure(label: str) -> dict[str, float]:
        row = gate_metrics(model, processor, settings.gate_questions)
        row["bootstrap_hit_rate"] = grounding_hit_rate(model, processor, held_bootstrap, gates)
        print(f"[{label}] reading accuracy (oracle crops) {row['reading_accuracy']:.3f}, generic grounding hit rate "
              f"{row['grounding_hit_rate']:.3f} (two named objects: {row['choice_hit_rate']:.3f}), bootstrap grounding "
              f"hit rate {row['bootstrap_hit_rate']:.3f}", flush=True)
        return row

    report["random_init"] = measure("random init")

    # Stage 1a: bootstrap grounding until its gate. Each base stage keeps its weights and record
    # on disk, and a rerun starts after the stages already done.
    model = _resumable(output / "bootstrap", ("bootstrap_curve", "bootstrap"), model, processor, report,
                       lambda: _bootstrap_stage(model, processor, maker, bootstrap, held_bootstrap, measure, settings, seed, progress))
    # Stage 1b: reading and general grounding until both gates, ending on the best-measured weights
    # (a constant rate on a mixture can undo an ability for a while; the best check is what the gates see).
    model = _resumable(output / "base", ("base_curve", "base", "gates"), model, processor, report,
                       lambda: _base_stage(model, maker, reading, grounding, bootstrap, measure, settings, seed, progress))
    if "choice_hit_rate" not in report["base"]:
        # A base record from before the grounding gate held one named object: its figures are of another
        # question set, so measure the saved weights again rather than trust them.
        report["base"] = measure("base (re-measured: older record)")
        report["gates"] = gate_verdicts(report["base"], settings)

    # Control: the same base model trained on global views with the true answers stays at chance.
    control = load_model(output / "base")
    single_true = example_pool(lambda i: maker.single_turn_row(i, rng, true_answer=True), range(n, 2 * n), "global-view rows", progress)
    fit(control, maker.tokens, _mixed_batches([single_true], [settings.batch], seed + 2), steps=settings.control_steps,
        learning_rate=settings.learning_rate, pad_id=pad, warmup_steps=10, progress=progress, description="global-view control")
    report["global_view_control_accuracy"] = single_turn_accuracy(control, processor, held_task, gates)
    report["global_view_control_train_accuracy"] = single_turn_accuracy(control, processor, maker.task, range(n, n + settings.gate_questions))
    print(f"[control] trained on global views with true answers: held-out accuracy {report['global_view_control_accuracy']:.3f}", flush=True)
    del control

    # Warm-start: format rows (random cells, random letters) plus rehearsal of the base abilities.
    formats = example_pool(lambda i: maker.format_row(i, rng), range(2 * n, 3 * n), "format rows", progress)
    singles = example_pool(lambda i: maker.single_turn_row(i, rng), range(3 * n, 4 * n), "single-turn rows", progress)
    quarter = settings.batch // 4
    fit(model, maker.tokens, _mixed_batches([formats, singles, reading, grounding], [quarter] * 4, seed + 3), steps=settings.warmstart_steps,
        learning_rate=settings.learning_rate / 3, pad_id=pad, warmup_steps=5, progress=progress, description="format warm-start")
    report["warmstart"] = measure("warm-start")
    # How far the warm-start's random-cell boxes already lean towards the task's target: what RL starts from.
    report["warmstart_box_tilt"] = task_box_tilt(model, processor, held_task, gates)
    print(f"[warm-start] turn-1 box tilt towards the task's target: {report['warmstart_box_tilt']}", flush=True)
    _save(model, processor, output / "warmstart")
    report["seconds"] = time.perf_counter() - started
    for where in (output, output / "warmstart"):  # the checkpoint carries its own record
        (where / "supervised.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# ------------------------------------------------------------------------ RL
@dataclass
class RLSettings:
    """The RL comparison: identical for MGPO and GRPO apart from the protocol."""

    steps: int = 120
    group_size: int = 8  # the paper's n; 4 questions a step see more images than 2 x 16 at the same cost
    prompts_per_step: int = 4
    learning_rate: float = 2e-4
    kl_coef: float = 0.05
    temperature: float = 1.0
    eval_every: int = 40
    eval_questions: int = 500
    train_questions: int = 2000


def rl_config(checkpoint: Path, protocol: str, seed: int, settings: Any, output_dir: Path, *, task_kwargs: Optional[dict[str, Any]] = None,
              budget: ImageBudget = CELL_BUDGET, threads: int = RUN_THREADS, **extra: Any) -> Any:
    """The trainer config of one RL run (MGPO: ``two_turn``; GRPO: ``single_turn``).

    ``settings`` holds the run's sizes and rates (:class:`RLSettings`' fields); ``task_kwargs`` and
    ``budget`` choose another task and image budget than the cell version's; ``extra`` sets further
    :class:`~mgpo_agents.config.MGPOConfig` fields (a first-turn rule, an evaluation set).
    """
    from mgpo_agents.config import MGPOConfig

    return MGPOConfig(
        model=str(checkpoint),
        dataset="synthetic",
        dataset_kwargs={"num_samples": settings.train_questions, "seed": TRAIN_SEED, **(task_kwargs or TASK_KWARGS)},
        protocol=protocol,
        min_pixels=budget.min_pixels,
        max_pixels=budget.max_pixels,
        box_frame="pixel",
        env_kwargs=dict(ENV_KWARGS),
        group_size=settings.group_size,
        prompts_per_step=settings.prompts_per_step,
        mini_batch_prompts=settings.prompts_per_step,
        micro_batch_size=settings.group_size * settings.prompts_per_step,
        temperature=settings.temperature,
        max_new_tokens=MAX_NEW_TOKENS,
        kl_coef=settings.kl_coef,
        entropy_coef=0.0,
        learning_rate=settings.learning_rate,
        weight_decay=0.0,
        steps=settings.steps,
        seed=seed,
        output_dir=str(output_dir),
        save_every=max(settings.steps, 1),
        keep_checkpoints=1,
        dtype="float32",
        torch_threads=threads,
        tensorboard=False,
        **extra,
    )


def trainer_inputs(checkpoint: Path) -> dict[str, Any]:
    """What MGPOTrainer needs beside its config: a position-coded model's own processor, with the model."""
    processor = load_task_processor(checkpoint)
    if isinstance(processor.image_processor, PositionCodedImageProcessor):
        return {"model": load_model(checkpoint), "processor": processor}
    return {}


def evaluation_task(settings: RLSettings) -> Any:
    from mgpo_datasets.synthetic import SyntheticTask

    return SyntheticTask(settings.eval_questions, seed=EVAL_SEED, **TASK_KWARGS)


def run_rl(checkpoint: Path, protocol: str, seed: int, settings: RLSettings, output_dir: Path, progress: bool = False) -> list[dict[str, Any]]:
    """One RL run with held-out evaluations every ``eval_every`` steps (``evals.jsonl``)."""
    from mgpo_agents.trainer import MGPOTrainer

    torch.set_num_threads(RUN_THREADS)
    shutil.rmtree(output_dir, ignore_errors=True)
    trainer = MGPOTrainer(rl_config(checkpoint, protocol, seed, settings, output_dir), **trainer_inputs(checkpoint))
    task = evaluation_task(settings)
    evals = []
    marks = list(range(settings.eval_every, settings.steps, settings.eval_every)) + [settings.steps]
    for mark in marks:
        trainer.train(mark, progress=progress)
        model = trainer.accelerator.unwrap_model(trainer.model)
        row = {"step": trainer.step, "protocol": protocol, "seed": seed, **task_episode_metrics(model, trainer.processor, task, range(len(task)), protocol)}
        evals.append(row)
        with open(output_dir / "evals.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{protocol} seed {seed}] step {trainer.step}: held-out accuracy {row['accuracy']:.3f}, hit rate {row['hit_rate']:.3f}", flush=True)
    return evals


def evaluate_checkpoint(checkpoint: Path, protocol: str, settings: RLSettings, output: Path) -> dict[str, Any]:
    """Held-out metrics of the warm-start checkpoint (the 'before' of both methods)."""
    torch.set_num_threads(RUN_THREADS)
    processor = load_task_processor(checkpoint)
    model = load_model(checkpoint)
    task = evaluation_task(settings)
    row = {"step": 0, "protocol": protocol, **task_episode_metrics(model, processor, task, range(len(task)), protocol)}
    output.write_text(json.dumps(row) + "\n")
    return row


def lanes_text(count: Optional[int]) -> str:
    """How a report names its parallel lanes: ``'2 lanes'``, ``'1 lane'``, or ``'? lanes'`` when the settings do not say."""
    return f"{count} lane" + ("" if count == 1 else "s") if count else "? lanes"


def _run_parallel(commands: list[list[str]], lanes: int, log_dir: Path) -> None:
    """Run commands, ``lanes`` at a time (one CPU thread each); fail loudly if any fails."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending = list(enumerate(commands))
    running: list[tuple[int, subprocess.Popen, Any]] = []
    failed = []
    while pending or running:
        while pending and len(running) < lanes:
            k, command = pending.pop(0)
            handle = open(log_dir / f"job{k}.log", "w")
            running.append((k, subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"}), handle))
        time.sleep(2)
        for item in list(running):
            k, process, handle = item
            if process.poll() is not None:
                handle.close()
                running.remove(item)
                tail = (log_dir / f"job{k}.log").read_text().strip().splitlines()[-3:]
                print(f"job {k} ({' '.join(commands[k][3:])}) finished with {process.returncode}: {tail[-1] if tail else ''}", flush=True)
                if process.returncode:
                    failed.append(k)
    if failed:
        raise RuntimeError(f"jobs {failed} failed; see {log_dir}/job*.log")


# -------------------------------------------------------------------- report
METHODS = {"two_turn": "MGPO", "single_turn": "GRPO"}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.array([v for v in values if v == v], dtype=float)
    if not len(array):
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _fmt(mean: float, std: float) -> str:
    return "—" if mean != mean else f"{mean:.3f} ± {std:.3f}"


def collect(output: Path) -> dict[str, Any]:
    """Every run's held-out evaluations and training metrics under ``output/runs``."""
    from mgpo_tools.metrics import read_metrics

    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in METHODS}
    for run_dir in sorted((output / "runs").glob("*-seed*")):
        protocol = run_dir.name.split("-seed")[0]
        evals = read_metrics(run_dir / "evals.jsonl", missing_ok=True)
        metrics = read_metrics(run_dir / "metrics.jsonl", missing_ok=True)
        runs.setdefault(protocol, []).append({"seed": int(run_dir.name.split("-seed")[1]), "evals": evals, "metrics": metrics})
    before = {p: json.loads((output / f"before-{p}.json").read_text()) for p in METHODS if (output / f"before-{p}.json").exists()}
    return {"runs": runs, "before": before, "output": str(output)}


def results_table(data: dict[str, Any]) -> str:
    """The markdown table: held-out metrics before and after RL, mean ± std over seeds."""
    lines = [
        "| method | seeds | accuracy before | accuracy after | valid-box rate after | hit rate before | hit rate after | mean IoU after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for protocol, name in METHODS.items():
        runs = [r for r in data["runs"].get(protocol, []) if r["evals"]]
        if not runs:
            continue
        before = data["before"].get(protocol, {})
        final = [r["evals"][-1] for r in runs]
        grounded = protocol != "single_turn"
        cells = [
            name,
            str(len(runs)),
            f"{before.get('accuracy', float('nan')):.3f}",
            _fmt(*_mean_std([e["accuracy"] for e in final])),
            _fmt(*_mean_std([e["valid_box_rate"] for e in final])) if grounded else "— (no box)",
            f"{before.get('hit_rate', float('nan')):.3f}" if grounded else "—",
            _fmt(*_mean_std([e["hit_rate"] for e in final])) if grounded else "—",
            _fmt(*_mean_std([e["mean_iou"] for e in final])) if grounded else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(data: dict[str, Any], table: str, seconds: float, checkpoint: Path) -> str:
    """The results page: settings, the supervised stages' gates, the RL table, the commands."""
    settings = json.loads((Path(data.get("output", ".")) / "rl_settings.json").read_text()) if data.get("output") else {}
    lines = [
        "# Grounding from a binary reward, in miniature (MGPO vs GRPO on CPU)", "",
        "Commands (2-core CPU, one torch thread per run):", "",
        "```bash",
        "python benchmarks/emergence.py cell-supervised --output outputs/emergence-cell   # base abilities, control, warm-start checkpoint",
        "python benchmarks/emergence.py cell --output outputs/emergence-cell              # RL comparison from the committed checkpoint, 3 seeds",
        "python benchmarks/emergence.py cell --quick --output outputs/emergence-cell-quick",
        "python benchmarks/emergence.py cell-gates --checkpoint DIR                       # re-measure a checkpoint's gates",
        "```", "",
        "The committed checkpoint is `benchmarks/checkpoints/emergence-warmstart` (its `supervised.json` is the stage record "
        "below); the probes that shaped the supervised curriculum: `emergence_probes.md`.", "",
    ]
    supervised = checkpoint / "supervised.json"
    if supervised.exists():
        report = json.loads(supervised.read_text())
        report.setdefault("leak_check", attribute_leak_check())
        base, warm = report.get("base", {}), report.get("warmstart", {})
        gates = StageSettings(**{k: v for k, v in report.get("settings", {}).items() if k in StageSettings.__dataclass_fields__})

        def cells(row: dict[str, Any]) -> str:
            keys = ("reading_accuracy", "grounding_hit_rate", "choice_hit_rate", "bootstrap_hit_rate")
            return " | ".join("—" if row.get(k) is None else f"{row[k]:.3f}" for k in keys)

        lines += [
            "## Base abilities and warm-start (supervised, measured on held-out questions)", "",
            "Stage 1a trains bootstrap grounding only (one large named object, no clutter) until its gate; stage 1b trains "
            "reading and general grounding (two named objects among clutter) with bootstrap rehearsal until both gates, "
            "and keeps its best-checked weights. The grounding gate's questions hold one named object among the general "
            "set's clutter; \"two named objects\" (the question picks one) is measured beside it and is not a gate.", "",
            "| stage | reading accuracy (oracle crops) | generic grounding hit rate (gate) | two named objects: asked one boxed | "
            "bootstrap grounding hit rate |", "|---|---|---|---|---|",
            f"| random init | {cells(report['random_init'])} |",
            *[f"| 1a, step {row['step']} | — | — | — | {row['bootstrap_hit_rate']:.3f} |" for row in report.get("bootstrap_curve", [])],
            *[f"| 1b, step {row['step']} | {cells(row)} |" for row in report.get("base_curve", [])],
            f"| base (gates: >= {gates.reading_gate} and >= {gates.grounding_gate}) | {cells(base)} |",
            f"| format warm-start (the RL checkpoint) | {cells(warm)} |",
            "",
            f"Global-view control (the base model trained on global views with the true answers): held-out accuracy "
            f"{report.get('global_view_control_accuracy', float('nan')):.3f}, on its own training questions "
            f"{report.get('global_view_control_train_accuracy', float('nan')):.3f} (chance 0.25).",
            f"Leak check over {report['leak_check']['layouts']} layouts rendered with each of the four answers: largest pixel "
            f"difference {report['leak_check']['view_max_difference']:.0f} in the global view, {report['leak_check']['crop_max_difference']:.0f} in the cell's crop.",
            f"Supervised stages took {report.get('seconds', float('nan')) / 60:.1f} min"
            + (f" ({_libraries(report['software'])}, {report['software']['torch_threads']} torch threads)." if "software" in report else "."),
            *_tilt_lines(report.get("warmstart_box_tilt"), gates.gate_questions),
            "",
        ]
    lines += ["## RL: held-out evaluation (greedy), mean ± std over seeds", "", table, "",
              f"RL comparison wall time: {seconds / 60:.1f} min (runs in {lanes_text(settings.get('lanes'))}, one CPU thread each).", ""]
    if settings:
        if "checkpoint" in settings:  # as the commands above name it: relative to the repository, not this machine's path
            settings["checkpoint"] = _repository_relative(settings["checkpoint"])
        software = settings.pop("software", None)
        lines += ["Settings (identical for both methods apart from the protocol): `" + json.dumps(settings) + "`", ""]
        if software:
            lines += [f"Libraries: {_libraries(software)}.", ""]
    lines += ["![curves](emergence_curves.png)", "", "![episode](emergence_episode.png)", ""]
    return "\n".join(lines) + "\n"


def _libraries(software: dict[str, Any]) -> str:
    return ", ".join(f"{name} {software[name]}" for name in ("python", "torch", "transformers", "numpy", "pillow") if name in software)


def _tilt_lines(tilt: Optional[dict[str, float]], questions: int) -> list[str]:
    """The warm-start's lean towards the task's target, for the results page (nothing for older records)."""
    if not tilt:
        return []
    if tilt["tilt"] >= 0.01:
        reading = "the random-cell format already leans a little towards the framed target (no task box was ever trained on)"
    elif tilt["tilt"] <= -0.01:
        reading = "the format leans away from the target: RL starts below the random boxes' level"
    else:
        reading = "the boxes ignore where the target is: RL starts at the random boxes' level"
    return [
        f"Warm-start turn-1 boxes on {questions} held-out task questions: the target's cell gets probability "
        f"{tilt['p_target']:.3f} on average, {tilt['p_target_if_blind']:.3f} for boxes that ignored the image "
        f"({tilt['tilt']:+.3f}; `box_tilt`): {reading}."
    ]


def _repository_relative(path: str) -> str:
    """``path`` relative to the repository root when it lies inside it (so results pages do not name one machine's folders)."""
    try:
        return str(Path(path).resolve().relative_to(REPOSITORY_ROOT))
    except ValueError:
        return path


def plot_results(data: dict[str, Any], path: Path) -> Path:
    """Accuracy, valid-box rate and hit rate over RL steps (mean and range over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours = {"two_turn": "tab:blue", "single_turn": "tab:orange"}
    panels = [
        ("held-out accuracy (greedy)", "evals", "accuracy"),
        ("valid-box rate (training rollouts)", "metrics", "valid_box_rate"),
        ("crop hit rate (training rollouts; held-out: dots)", "metrics", "hit_rate"),
    ]
    for ax, (title, source, key) in zip(axes, panels):
        for protocol, name in METHODS.items():
            runs = [r for r in data["runs"].get(protocol, []) if r[source]]
            if not runs or (protocol == "single_turn" and key != "accuracy"):
                continue
            before = data["before"].get(protocol)
            series = []
            for r in runs:
                rows = r[source]
                if source == "evals" and before is not None:
                    rows = [before] + rows
                steps = [row["step"] for row in rows]
                values = np.array([row.get(key, float("nan")) for row in rows], dtype=float)
                if source == "metrics" and len(values) >= 5:  # sampled rollouts are noisy: a running mean
                    kernel = np.ones(5) / 5
                    values = np.convolve(np.pad(values, (2, 2), mode="edge"), kernel, mode="valid")
                series.append((steps, values))
            length = min(len(v) for _, v in series)
            steps = series[0][0][:length]
            stacked = np.stack([v[:length] for _, v in series])
            ax.plot(steps, stacked.mean(0), color=colours[protocol], label=f"{name} (mean of {len(series)} seed{'' if len(series) == 1 else 's'})")
            ax.fill_between(steps, stacked.min(0), stacked.max(0), color=colours[protocol], alpha=0.2)
            if key == "hit_rate" and protocol == "two_turn":
                for r in runs:
                    ev = ([before] if before else []) + r["evals"]
                    ax.scatter([e["step"] for e in ev], [e["hit_rate"] for e in ev], color=colours[protocol], s=12, zorder=3)
        if key == "accuracy":
            ax.axhline(0.25, color="gray", linestyle=":", label="chance (4 options)")
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def episode_picture(checkpoint: Path, path: Path, index: Optional[int] = None, settings: Optional[RLSettings] = None) -> dict[str, Any]:
    """One greedy held-out episode of a trained model: its box on the view, the crop, its answer.

    ``index=None`` shows the first of the held-out questions whose crop holds the target
    (so the picture shows what a successful episode looks like), else question ``index``.
    """
    from .episode_picture import draw_episodes, play_episodes

    settings = settings or RLSettings()
    task = evaluation_task(settings)
    processor = load_task_processor(checkpoint)
    model = load_model(checkpoint)
    if index is None:
        hits: list[int] = []

        def note_hit(env: gym.Env, episode: Trajectory) -> None:
            if episode.info.get("crop_box") and contains(episode.info["crop_box"], episode.info["target_box"]):
                hits.append(episode.sample_index)

        greedy_evaluation(model, processor, lambda: make_env(task), range(min(40, len(task))), on_episode_end=note_hit)
        index = min(hits) if hits else 0
    shown = play_episodes(model, processor, lambda: make_env(task), [index])
    draw_episodes(shown, [task[index].answer], path, task[index].question, per_row=1)
    info, replies = shown[0][1].info, shown[0][1].replies
    return {"index": index, "replies": replies, "correct": bool(info.get("correct")), "crop_box": info.get("crop_box"), "target_box": info.get("target_box")}


# ----------------------------------------------------------------------- CLI
COMMITTED_CHECKPOINT = REPOSITORY_ROOT / "benchmarks" / "checkpoints" / "emergence-warmstart"


def compare(checkpoint: Path, output: Path, settings: RLSettings, seeds: Sequence[int], lanes: int = 2) -> dict[str, Any]:
    """Stage 3 and 4: MGPO and GRPO runs from ``checkpoint``, in parallel lanes, then the report."""
    started = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    software = dict(software_record(), torch_threads=RUN_THREADS)  # what each run sets, not this launcher's count
    record = {**asdict(settings), "seeds": list(seeds), "lanes": lanes, "checkpoint": str(checkpoint), "software": software}
    (output / "rl_settings.json").write_text(json.dumps(record, indent=2) + "\n")
    me = [sys.executable, str(REPOSITORY_ROOT / "benchmarks" / "emergence.py")]
    common = ["--checkpoint", str(checkpoint), "--output", str(output), "--settings", json.dumps(asdict(settings))]
    commands = [me + ["cell-before", "--protocol", p] + common for p in METHODS]
    for seed in seeds:
        for protocol in METHODS:  # interleaved, so the two lanes carry similar loads
            commands.append(me + ["cell-rl", "--protocol", protocol, "--seed", str(seed)] + common)
    # Longest first: MGPO runs take about three times a GRPO run.
    commands.sort(key=lambda c: (c[len(me)] != "cell-rl", "two_turn" not in c))
    _run_parallel(commands, lanes, output / "logs")
    seconds = time.perf_counter() - started
    return write_report(output, seconds, checkpoint)


def write_report(output: Path, seconds: float, checkpoint: Path) -> dict[str, Any]:
    data = collect(output)
    table = results_table(data)
    plot = plot_results(data, output / "emergence_curves.png")
    best = None
    for run in data["runs"].get("two_turn", []):
        final = output / "runs" / f"two_turn-seed{run['seed']}" / "checkpoints"
        found = sorted(final.glob("step-*")) if final.exists() else []
        if found:
            best = found[-1]
            break
    picture = episode_picture(best, output / "emergence_episode.png") if best else None
    summary = {"table": table, "seconds": seconds, "checkpoint": str(checkpoint), "plot": str(plot), "episode": picture}
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (output / "emergence.md").write_text(markdown_report(data, table, seconds, checkpoint))
    print(table)
    print(f"RL comparison took {seconds / 60:.1f} min")
    return summary
