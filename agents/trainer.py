"""The MGPO trainer: rollouts on HighResVQA-v0, the MGPO loss, checkpoints and logs.

One optimisation step:

1. take the step's questions (a seeded permutation per epoch, so a resumed run
   sees the same order), split between processes;
2. play G episodes per question (:class:`~mgpo_agents.rollout.RolloutEngine`);
3. group-relative advantages from the binary rewards;
4. log-probs under the rollout policy (``pi_old``) and the frozen reference;
5. for each mini-batch: accumulate the token-mean MGPO loss over micro-batches,
   clip the gradient norm, take an AdamW step;
6. log metrics (JSONL, TensorBoard, progress bar) and write a checkpoint when due.

Multi-process training: ``torchrun`` or ``accelerate launch`` starts the processes;
each plays its share of every mini-batch's questions, and either DDP (through
accelerate) or FSDP2 (``fully_shard``, applied here: :mod:`~mgpo_agents.sharding`)
averages the gradients; the loss is scaled so that the result equals one process
doing the whole batch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np
import torch

import mgpo_env  # noqa: F401  (registers the environment)
from mgpo_datasets.registry import dataset_entry, resolve_dataset
from mgpo_env.image_store import ImageStore

from . import checkpoint as checkpoint_state
from .bad_samples import BAD_SAMPLES_FILE, BadSamples
from .config import MGPOConfig
from .faults import CheckpointWriteError, NonFiniteUpdates, RunPreempted
from .mgpo_loss import LossTerms, group_advantages, mgpo_token_loss, pack, token_logprobs
from .qwen_processor import load_model, load_processor
from .preemption import StopSignals
from .rollout import RolloutEngine
from .sharding import gathered, gradient_norm, is_sharded, shard_model, shard_summary, start_process_group
from .shared_images import encode_each_image_once
from .trajectory import Trajectory

CHECKPOINT_PREFIX = "step-"


def add_lora_adapters(model: Any, config: MGPOConfig) -> Any:
    """With ``lora_rank`` > 0, the model wrapped in LoRA adapters (then only they train); otherwise the model itself."""
    if config.lora_rank <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=[m.strip() for m in config.lora_target_modules.split(",") if m.strip()],
    )
    return get_peft_model(model, lora)


def resolve_model_path(config: MGPOConfig, output_dir: Path) -> Path:
    """The model directory: the configured path, or the tiny model built on first use."""
    if config.model == "builtin:tiny":
        path = output_dir / "base_model"
        if not (path / "config.json").exists():
            from .tiny_model import build_tiny_qwen25vl

            build_tiny_qwen25vl(path, seed=config.seed)
        return path
    path = Path(config.model).expanduser()
    if not (path / "config.json").exists():
        where = "" if path.is_absolute() else f" (relative to the current folder, {Path.cwd()})"
        raise FileNotFoundError(
            f"model directory {str(path)!r}{where} has no config.json; give a local Qwen2.5-VL-family model folder "
            "with --model (nothing is downloaded) or 'builtin:tiny'"
        )
    return path


def env_factory(
    config: MGPOConfig, dataset: Any, store: ImageStore, *, protocol: Optional[str] = None, url: str = ""
) -> Callable[[], gym.Env]:
    """A callable making environments that share one dataset object and one image store.

    With ``url``, each environment is a session on that ``mgpo serve`` server instead, with
    lossless images (the exact pixels a local environment shows); the server must run the
    same dataset and options, which the first connection checks.
    """
    played = protocol or config.protocol
    if url:
        from mgpo_env.remote.client import RemoteHighResVQAEnv

        expect = dict(dataset_size=len(dataset), protocol=played, min_pixels=config.min_pixels, max_pixels=config.max_pixels, box_frame=config.box_frame)
        if played == "free":
            expect["max_turns"] = config.max_turns
        return lambda: RemoteHighResVQAEnv(url, image_format="png", expect=expect)
    kwargs = dict(config.env_kwargs)
    kwargs.update(
        dataset=dataset,
        protocol=played,
        max_turns=config.max_turns,
        min_pixels=config.min_pixels,
        max_pixels=config.max_pixels,
        box_frame=config.box_frame,
        image_store=store,
    )
    if config.first_turn and played == "two_turn":
        from mgpo_env.scripted_turn import ScriptedFirstTurn

        return lambda: ScriptedFirstTurn(gym.make("mgpo/HighResVQA-v0", **kwargs), config.first_turn)
    return lambda: gym.make("mgpo/HighResVQA-v0", **kwargs)


def step_questions(step: int, prompts_per_step: int, dataset_size: int, seed: int) -> list[int]:
    """The dataset indices of a step's questions: consecutive slices of one seeded permutation per epoch."""
    permutations: dict[int, np.ndarray] = {}  # a step spans at most a few epochs
    indices = []
    for j in range(prompts_per_step):
        epoch, offset = divmod(step * prompts_per_step + j, dataset_size)
        if epoch not in permutations:
            permutations[epoch] = np.random.default_rng([seed, epoch]).permutation(dataset_size)
        indices.append(int(permutations[epoch][offset]))
    return indices


def rank_share(num_groups: int, mini_batch: int, world: int, rank: int) -> list[int]:
    """Which of a step's question slots a process plays: an equal share of every mini-batch."""
    per_rank = mini_batch // world
    return [g for g in range(num_groups) if (g % mini_batch) // per_rank == rank]


def mini_batch_rows(trajectory_groups: list[int], groups_per_batch: int) -> list[list[int]]:
    """A process's mini-batches as trajectory indices: its groups in slot order, ``groups_per_batch`` at a time.

    ``trajectory_groups`` holds each trajectory's group slot:

    >>> mini_batch_rows([3, 3, 1, 1, 5, 5], 2)
    [[2, 3, 0, 1], [4, 5]]
    """
    by_group: dict[int, list[int]] = {}
    for i, group in enumerate(trajectory_groups):
        by_group.setdefault(group, []).append(i)
    in_order = sorted(by_group)
    return [[i for g in in_order[k : k + groups_per_batch] for i in by_group[g]] for k in range(0, len(in_order), groups_per_batch)]


@dataclass
class _LossInputs:
    """What the loss reads of a step's trajectories besides the policy's current log-probs."""

    trajectories: list[Trajectory]
    advantages: torch.Tensor  # one per trajectory
    old_logp: Optional[list[torch.Tensor]]  # pi_old per trajectory; None: a single update, where pi_old is the policy itself
    ref_logp: list[Optional[torch.Tensor]]  # the reference's per trajectory (all None without a KL term)


@dataclass
class _LossTotals:
    """Sums over a step's micro-batches (loss terms, tokens) and updates (gradient norms), for the logged means."""

    policy: float = 0.0
    kl: float = 0.0
    entropy: float = 0.0
    clipped: float = 0.0
    tokens: float = 0.0
    grad_norm: float = 0.0
    updates: float = 0.0
    skipped: float = 0.0  # updates not applied: non-finite loss or gradient

    def add(self, terms: LossTerms) -> None:
        """Count one micro-batch's loss terms (sums over its tokens); a skipped update's are not counted."""
        self.policy += float(terms.policy)
        self.kl += float(terms.kl)
        self.entropy += float(terms.entropy)
        self.clipped += float(terms.clipped)
        self.tokens += terms.tokens

    def means(self) -> dict[str, float]:
        """Per generated token (gradient norm: per update) over the whole step."""
        tokens = max(self.tokens, 1.0)
        return {
            "policy_loss": self.policy / tokens,
            "kl": self.kl / tokens,
            "entropy": self.entropy / tokens,
            "clip_fraction": self.clipped / tokens,
            "grad_norm": self.grad_norm / max(self.updates, 1.0),
            "updates": self.updates,
            "skipped_updates": self.skipped,
        }


class MGPOTrainer:
    """Trains a Qwen2.5-VL-family model with MGPO (or the single-turn GRPO baseline).

    Args:
        config: every hyperparameter (:class:`~mgpo_agents.config.MGPOConfig`).
        accelerator: an ``accelerate.Accelerator``; one is made if not given.
        model, processor: an already built model and its processor (e.g. random weights
            from a public config for benchmarks); ``config.model`` is then not loaded.
    """

    # ------------------------------------------------------------------- setup
    def __init__(self, config: MGPOConfig, accelerator: Any = None, *, model: Any = None, processor: Any = None) -> None:
        self.config = config
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        self.output_dir = Path(config.output_dir)
        self.accelerator = accelerator if accelerator is not None else _make_accelerator(config)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self._check_batch_split()
        self._make_output_dir()
        _seed_everything(config.seed)

        given = model is not None
        self.model_path, self.processor, model = self._load_policy(model, processor)
        model = add_lora_adapters(model, self.config)
        self.reference = self._frozen_reference(model, copy_policy=given)
        self.model, self.optimizer = self._prepare_for_training(model)

        self.dataset = self._training_dataset()
        self.images = ImageStore()
        self.engine = self._rollout_engine()
        self.pad_id = self.engine.pad_id
        self.step = 0
        self.skip_streak = 0  # updates skipped in a row for a non-finite loss or gradient
        self.episode_store = self._episode_store()
        bad_file = self.output_dir / BAD_SAMPLES_FILE
        self.bad_samples = BadSamples(bad_file, len(self.dataset), policy=config.on_bad_sample, max_fraction=config.max_bad_fraction)
        for where, reason in getattr(self.dataset, "skipped", []):  # checked against max_bad_fraction in validate_data
            self.bad_samples.add_unloadable(where, reason, write=self.accelerator.is_main_process)

    def _training_dataset(self) -> Any:
        """The training set; under ``on_bad_sample="skip"`` a loader that can drops rows it cannot use (they are listed)."""
        config = self.config
        kwargs = dict(config.dataset_kwargs)
        if config.on_bad_sample == "skip" and isinstance(config.dataset, str):
            try:
                if dataset_entry(config.dataset).accepts_on_error:
                    kwargs.setdefault("on_error", "skip")
            except ValueError:  # an unknown name: resolve_dataset says so
                pass
        return resolve_dataset(config.dataset, **kwargs)

    def _check_batch_split(self) -> None:
        """Each process plays an equal share of every mini-batch (:func:`rank_share`), so both sizes must split evenly."""
        config = self.config
        if config.prompts_per_step % self.world or config.mini_batch_prompts % self.world:
            raise ValueError(
                f"prompts_per_step ({config.prompts_per_step}) and mini_batch_prompts ({config.mini_batch_prompts}) "
                f"must be multiples of the number of processes ({self.world})"
            )

    def _make_output_dir(self) -> None:
        """The main process makes the output folder; the others wait until it exists."""
        if self.accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()

    def _load_policy(self, model: Any, processor: Any) -> tuple[Path, Any, Any]:
        """(model directory, processor, model): the given ones, or those loaded from ``config.model``."""
        config = self.config
        if model is not None:
            if processor is None:
                raise ValueError("a model given to MGPOTrainer needs its processor too")
            return Path(config.model), processor, model
        if self.accelerator.is_main_process:  # build the tiny model once, before the others look for it
            resolve_model_path(config, self.output_dir)
        self.accelerator.wait_for_everyone()
        path = resolve_model_path(config, self.output_dir)
        processor = load_processor(path, trust_remote_code=config.trust_remote_code)
        model = load_model(path, dtype=_dtype(config.dtype, self.accelerator.device), trust_remote_code=config.trust_remote_code)
        return path, processor, model

    def _frozen_reference(self, model: Any, *, copy_policy: bool) -> Any:
        """The frozen model of the KL term, or None where there is none to keep.

        With LoRA the reference is the base model (adapters disabled, see :meth:`_reference_logprobs`),
        and ``kl_coef`` 0 needs none. A given policy is copied (it may have no folder to load from);
        otherwise the reference is loaded again from the model folder. Under FSDP the reference is
        sharded like the policy: in full fine-tuning it is as large as the policy's weights, and a
        whole copy on every process would cost what sharding saves.
        """
        config = self.config
        if config.lora_rank > 0 or config.kl_coef <= 0:
            return None
        if copy_policy:
            reference = copy.deepcopy(model)
        else:
            dtype = _dtype(config.dtype, self.accelerator.device)
            reference = load_model(self.model_path, dtype=dtype, trust_remote_code=config.trust_remote_code)
        reference.requires_grad_(False).eval()
        encode_each_image_once(reference, config.encode_images_once)  # a module of its own: the engine hooks only the policy
        if config.distributed == "fsdp":
            shard_model(reference, frozen=True)  # moves each block to the device as it shards it
        else:
            reference.to(self.accelerator.device)
        return reference

    def _prepare_for_training(self, model: Any) -> tuple[Any, torch.optim.Optimizer]:
        """The policy on its device and its AdamW optimiser over the trainable weights: sharded with
        ``fully_shard`` under FSDP (each process says how much it holds), else wrapped by accelerate (DDP)."""
        sharded = self.config.distributed == "fsdp"
        if sharded:
            shard_model(model)  # moves each block to the device as it shards it: never a whole copy there
            print(shard_summary(model, self.rank), flush=True)
        else:
            model.to(self.accelerator.device)
        params = [p for p in model.parameters() if p.requires_grad]  # after sharding: the optimiser holds the shards
        optimizer = torch.optim.AdamW(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        return (model, optimizer) if sharded else self.accelerator.prepare(model, optimizer)

    def _rollout_engine(self) -> RolloutEngine:
        """The engine playing the training episodes with the policy, on environments over the training set."""
        config = self.config
        return RolloutEngine(
            self.accelerator.unwrap_model(self.model),
            self.processor,
            env_factory(config, self.dataset, self.images, url=config.env_url),
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            generation_batch_size=config.generation_batch_size,
            seed=config.seed,
            encode_images_once=config.encode_images_once,  # the hooks serve the training passes too (same modules)
            max_episode_tokens=config.max_episode_tokens,
            # Reported back: BadSamples lists each one, then applies on_bad_sample. With env_url the server reads the
            # images, and its error for one it cannot read is not a DataError here: that stops the run.
            skip_bad_samples=True,
            stand_in=self._stand_in,
        )

    def _episode_store(self) -> Any:
        """Where the main process stores rollouts and evaluation episodes when the config asks for either, else None."""
        wanted = self.config.save_rollouts_every > 0 or self.config.save_eval_episodes
        if not wanted or not self.accelerator.is_main_process:
            return None
        from mgpo_tools.episode_store import EpisodeStore

        return EpisodeStore(self.output_dir / "episodes")

    # ----------------------------------------------------------- training loop
    def train(self, steps: Optional[int] = None, *, progress: bool = True) -> list[dict[str, Any]]:
        """Run until ``steps`` (default ``config.steps``) steps are done; returns this call's metrics."""
        from tqdm.auto import tqdm

        total = self.config.steps if steps is None else steps
        history = []
        writer = self._tensorboard()
        bar = tqdm(
            total=total,
            initial=self.step,
            desc="MGPO" if self.config.protocol != "single_turn" else "GRPO",
            disable=not (progress and self.accelerator.is_main_process),
            dynamic_ncols=True,
        )
        if self.accelerator.is_main_process:
            self.config.save(self.output_dir / "config.json")
            self._drop_metrics_after(self.step)
        try:
            if self.step < total:
                self.validate_data(progress=progress)
            with StopSignals() as signals:
                while self.step < total:
                    metrics = self.train_step()
                    history.append(metrics)
                    self._log(metrics, writer)
                    bar.set_postfix(progress_postfix(metrics), refresh=False)  # shown by the update below
                    bar.update(1)
                    saved = self.step % self.config.save_every == 0 or self.step == total
                    if saved:
                        self._checkpoint()
                    stop = self._stop_signal(signals)
                    if stop is not None:
                        if not saved:
                            self._checkpoint()
                        path = self.output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{self.step:06d}"
                        raise RunPreempted(
                            f"stopped by {stop} after step {self.step} of {total}; checkpoint {path} written. "
                            "Run the same command with --resume to continue exactly from there",
                            step=self.step,
                            signal_name=stop,
                        )
                    if self._evaluation_due(total):
                        held_out = self.evaluate(f"step{self.step}")
                        if held_out:  # FSDP: only the main process returns figures
                            bar.write(f"step {self.step}: held-out accuracy {held_out['accuracy']:.3f}, hit rate {held_out['hit_rate']:.3f}")
        finally:  # also when a stop signal, bad data or a non-finite streak ends the run
            bar.close()
            if writer is not None:
                writer.close()
        if self.accelerator.is_main_process and (self.output_dir / "metrics.jsonl").exists():
            from .plots import plot_metrics

            plot_metrics(self.output_dir / "metrics.jsonl", self.output_dir / "curves.png")
        return history

    def validate_data(self, *, progress: bool = True) -> None:
        """Before the first step: find the training samples whose stored image cannot be read (``config.validate_data``).

        Each one is recorded in :attr:`bad_samples` (listed in ``bad_samples.jsonl``, then skipped, or the run
        stops as ``on_bad_sample`` and ``max_bad_fraction`` say). Nothing in the dataset is changed.
        """
        mode = self.config.validate_data
        self.bad_samples.check()  # rows the loader dropped count too
        if mode == "none":
            return
        from mgpo_datasets.data_check import unreadable_images

        found = unreadable_images(self.dataset, decode=mode == "decode", progress=progress and mode == "decode" and self.accelerator.is_main_process)
        for index, sample_id, reason in found:
            self.bad_samples.add(index, sample_id, reason, found="validation", write=self.accelerator.is_main_process)
        if found and self.accelerator.is_main_process:
            print(f"mgpo train: {len(found)} of {len(self.dataset)} training samples have unreadable images and are skipped: a step "
                  f"that draws one plays the next readable sample instead (listed in {self.bad_samples.path})", file=sys.stderr)

    def _checkpoint(self) -> None:
        """:meth:`save_checkpoint` on every process; a write that fails on the main one stops them all, not only it."""
        failure: Optional[CheckpointWriteError] = None
        try:
            self.save_checkpoint()
        except CheckpointWriteError as error:
            failure = error
        if self._on_any_process(failure is not None) and failure is None:
            failure = CheckpointWriteError(f"the main process could not write checkpoint step {self.step} (see its message)")
        if failure is not None:
            raise failure

    def _stop_signal(self, signals: StopSignals) -> Optional[str]:
        """The stop signal's name if any process has received one (all processes stop after the same step)."""
        if not self._on_any_process(signals.received is not None):
            return None
        return signals.received or "SIGTERM (on another process)"

    def _on_any_process(self, condition: bool) -> bool:
        """Whether ``condition`` holds on at least one process (every process must call; one process: itself)."""
        if self.world == 1:
            return condition
        flag = torch.tensor([1.0 if condition else 0.0], device=self.accelerator.device)
        return self.accelerator.reduce(flag, reduction="sum").item() > 0

    def _drop_metrics_after(self, step: int) -> None:
        """Make metrics.jsonl hold each step up to ``step`` once, whatever a crash or kill left behind.

        A run killed after its last checkpoint logged steps it will now play again, and a kill
        during a write leaves a torn line that the next append would merge with: both are removed
        (the file is rewritten atomically, and the removal said), so no step is lost or doubled.
        """
        path = self.output_dir / "metrics.jsonl"
        if not path.exists():
            return
        import warnings

        from mgpo_tools.metrics import read_metrics

        raw = path.read_bytes()
        with warnings.catch_warnings(record=True) as unreadable:
            warnings.simplefilter("always")
            rows = read_metrics(path)
        kept = [row for row in rows if int(row.get("step", 0)) <= step]
        if len(kept) == len(rows) and not unreadable and (not raw or raw.endswith(b"\n")):
            return
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text("".join(json.dumps(row) + "\n" for row in kept))
        os.replace(temporary, path)
        print(f"mgpo train: {path}: kept steps up to {step} (the checkpoint's); removed {len(rows) - len(kept)} later step(s), "
              f"to be logged again, and {len(unreadable)} torn or unreadable line(s)", file=sys.stderr)

    def _evaluation_due(self, total: int) -> bool:
        """Whether ``eval_every`` asks for a held-out evaluation now (the last step's is the caller's "after")."""
        every = self.config.eval_every
        here = self.accelerator.is_main_process or is_sharded(self.model)  # FSDP: all processes gather the weights
        return bool(every and self.config.eval_dataset and self.step % every == 0 and self.step < total and here)

    def evaluate(self, label: str) -> dict[str, Any]:
        """Greedy held-out evaluation of the current policy on the config's evaluation data (main process).

        Under FSDP every process calls it: all gather the weights, the main process evaluates, the
        others return an empty summary.
        """
        from .evaluation import evaluate_trainer

        with gathered(self.model):
            return evaluate_trainer(self, label) if self.accelerator.is_main_process else {}

    def _log(self, metrics: dict[str, Any], writer: Any) -> None:
        """Append a step's metrics to metrics.jsonl and, where one is open, to TensorBoard (main process only)."""
        if not self.accelerator.is_main_process:
            return
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if writer is None:
            return
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and key != "step" and math.isfinite(value):
                writer.add_scalar(f"train/{key}", value, metrics["step"])
        writer.flush()

    def _tensorboard(self) -> Any:
        if not (self.config.tensorboard and self.accelerator.is_main_process):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: JSONL is still written
            return None
        return SummaryWriter(str(self.output_dir / "tensorboard"))

    def train_step(self) -> dict[str, Any]:
        """One optimisation step (steps 1-5 of the module docstring); returns its metrics."""
        config = self.config
        started = time.perf_counter()
        questions = step_questions(self.step, config.prompts_per_step, len(self.dataset), config.seed)
        mine = rank_share(len(questions), config.mini_batch_prompts, self.world, self.rank)
        # A bad sample's group plays a stand-in, so every process keeps its share of the batch.
        known_bad = [g for g in mine if questions[g] in self.bad_samples]  # found before: not even tried
        for g in known_bad:
            questions[g] = self._stand_in(questions[g])
        mine = [g for g in mine if questions[g] is not None]

        # ---- rollouts (no gradients); groups keep their slot in the whole step, for seeding
        self.model.eval()
        save_now = self.episode_store is not None and config.save_rollouts_every > 0 and (self.step + 1) % config.save_rollouts_every == 0
        with gathered(self.model):  # FSDP: whole weights, so that episodes of different lengths need no collectives
            result = self.engine.run(
                [questions[g] for g in mine],
                group_size=config.group_size,
                step=self.step,
                group_ids=mine,
                check_drift=config.check_token_drift,
                on_episode_end=self._store_episode if save_now else None,
            )
        skipped = len(known_bad) + len(result.skipped)
        self._record_bad_samples(result.skipped)
        trajectories = result.trajectories
        times = {"generation": result.times.generation, "environment": result.times.environment, "tokenization": result.times.tokenization}

        # ---- advantages
        rewards = torch.tensor([t.reward for t in trajectories])
        groups = torch.tensor([t.group for t in trajectories])
        advantages, flat_groups = group_advantages(rewards, groups, config.advantage_eps)

        # ---- learning
        learn_started = time.perf_counter()
        # An episode ended before its first reply (overlong prompt) teaches nothing: one process may leave it out,
        # several keep it so that each takes part in every collective of the update.
        learnable = [i for i, t in enumerate(trajectories) if self.world > 1 or any(t.loss_mask)]
        stats = self._optimise([trajectories[i] for i in learnable], advantages[learnable])
        times["learning"] = time.perf_counter() - learn_started
        self.step += 1
        metrics = self._metrics(trajectories, rewards, flat_groups, stats, times, result.drift, skipped)
        metrics["step_time"] = time.perf_counter() - started
        return metrics

    def _stand_in(self, index: int) -> Optional[int]:
        """The sample that plays in a bad one's place: the next in dataset order not known to be bad (None: none left)."""
        size = len(self.dataset)
        return next(((index + k) % size for k in range(1, size) if (index + k) % size not in self.bad_samples), None)

    def _record_bad_samples(self, found: list[tuple[int, str, str]]) -> None:
        """Add the samples this step found unreadable (on every process) to :attr:`bad_samples`; may stop the run."""
        if self.world > 1:
            from accelerate.utils import gather_object

            found = gather_object(found)
        for index, sample_id, reason in found:
            self.bad_samples.add(index, sample_id, reason, found=f"step {self.step + 1}", write=self.accelerator.is_main_process)
            if self.accelerator.is_main_process:
                print(f"mgpo train: skipped sample {sample_id!r} (index {index}): {reason}", file=sys.stderr)

    def _store_episode(self, env: gym.Env, trajectory: Trajectory) -> None:
        from mgpo_tools.recording import record_from_env

        self.episode_store.add(record_from_env(env, step=self.step, split="train", extra={"group": trajectory.group, "rollout": trajectory.rollout}))

    # --------------------------------------------------- log-probs and updates
    def _logprobs(self, model: Any, trajectories: list[Trajectory], with_entropy: bool, grad: bool) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]]]:
        """Per-trajectory generated-token log-probs (and entropies), in micro-batches."""
        out_logp, out_ent = [], []
        size = self.config.micro_batch_size
        dtype = next(self.accelerator.unwrap_model(self.model).parameters()).dtype
        with torch.set_grad_enabled(grad):
            for start in range(0, len(trajectories), size):
                chunk = trajectories[start : start + size]
                batch = pack(chunk, self.pad_id, self.engine.tokens.image_token_id, self.accelerator.device, dtype)
                logp, ent = token_logprobs(model, batch, self.config.temperature, with_entropy, full_logits=not self.config.lm_head_at_loss_positions)
                for row in range(len(chunk)):
                    selected = batch.token_rows == row
                    out_logp.append(logp[selected])
                    out_ent.append(ent[selected] if ent is not None else None)
        return out_logp, out_ent

    def _reference_logprobs(self, trajectories: list[Trajectory]) -> list[Optional[torch.Tensor]]:
        if self.config.kl_coef <= 0:
            return [None] * len(trajectories)
        if self.reference is not None:
            return self._logprobs(self.reference, trajectories, False, False)[0]
        unwrapped = self.accelerator.unwrap_model(self.model)
        with unwrapped.disable_adapter():  # LoRA: the reference is the base model
            return self._logprobs(self.model, trajectories, False, False)[0]

    def _optimise(self, trajectories: list[Trajectory], advantages: torch.Tensor) -> dict[str, float]:
        """``ppo_epochs`` passes over this process's mini-batches, one AdamW update each; returns the loss statistics."""
        config = self.config
        mini_batches = mini_batch_rows([t.group for t in trajectories], config.mini_batch_prompts // self.world)
        single_update = config.ppo_epochs == 1 and len(mini_batches) == 1
        self.model.eval()  # no dropout in the log-prob passes: rollout and training see the same model
        ref_logp = self._reference_logprobs(trajectories)
        old_logp = None if single_update else self._logprobs(self.model, trajectories, False, False)[0]
        inputs = _LossInputs(trajectories, advantages, old_logp, ref_logp)
        totals = _LossTotals()
        for rows in mini_batches * config.ppo_epochs:  # every mini-batch once per epoch, in order
            self._update(inputs, rows, totals)
        return totals.means()

    def _update(self, inputs: _LossInputs, rows: list[int], totals: _LossTotals) -> None:
        """One AdamW update on a mini-batch: the loss accumulated over its micro-batches, gradients synced on the last."""
        normaliser = self._loss_normaliser(inputs.trajectories, rows)
        size = self.config.micro_batch_size
        chunks = [rows[k : k + size] for k in range(0, len(rows), size)]
        parts = []
        for c, chunk in enumerate(chunks):
            sync = c == len(chunks) - 1
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
                terms = self._micro_batch_loss(inputs, chunk, normaliser)
                self.accelerator.backward(terms.loss)
            parts.append(terms)
        grad_norm = gradient_norm(self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm))
        if self._finite_everywhere([float(t.loss.detach()) for t in parts] + [grad_norm]):
            self.optimizer.step()
            self.skip_streak = 0
            for terms in parts:
                totals.add(terms)
            totals.grad_norm += grad_norm
            totals.updates += 1
        else:
            self._skip_update(totals, parts, grad_norm)
        self.optimizer.zero_grad(set_to_none=True)

    def _finite_everywhere(self, values: list[float]) -> bool:
        """Whether every value is finite on every process (all of them then apply or skip the update together)."""
        return not self._on_any_process(not all(math.isfinite(v) for v in values))

    def _skip_update(self, totals: _LossTotals, parts: list[LossTerms], grad_norm: float) -> None:
        """A non-finite loss or gradient: no optimiser step (the caller zeroes the gradients), counted and said."""
        totals.skipped += 1
        self.skip_streak += 1
        losses = ", ".join(f"{float(t.loss.detach()):.4g}" for t in parts)
        if self.accelerator.is_main_process:
            print(f"mgpo train: step {self.step + 1}: skipped an update with a non-finite loss or gradient (loss {losses}; "
                  f"gradient norm {grad_norm:.4g}); {self.skip_streak} in a row", file=sys.stderr)
        if self.skip_streak >= self.config.max_consecutive_skips:
            last = latest_checkpoint(self.output_dir)
            raise NonFiniteUpdates(
                f"{self.skip_streak} updates in a row had a non-finite loss or gradient (--max-consecutive-skips "
                f"{self.config.max_consecutive_skips}); stopped at step {self.step + 1} without applying them. "
                + (f"The last good checkpoint, {last}, is intact" if last else "No checkpoint had been written yet")
                + "; a lower --learning-rate or --max-grad-norm may help"
            )

    def _loss_normaliser(self, trajectories: list[Trajectory], rows: list[int]) -> float:
        """What this process divides its summed token losses by so that the update is the global token-mean."""
        local_tokens = sum(sum(trajectories[i].loss_mask) for i in rows)
        global_tokens = self.accelerator.reduce(torch.tensor(float(local_tokens), device=self.accelerator.device), reduction="sum").item()
        # DDP averages gradients over processes; multiplying by their number turns
        # that average back into the sum, so the result is the global token-mean.
        return max(global_tokens, 1.0) / self.world

    def _micro_batch_loss(self, inputs: _LossInputs, chunk: list[int], normaliser: float) -> LossTerms:
        """The MGPO loss of the trajectories ``chunk`` indexes, under the policy as it is now (with gradients)."""
        config = self.config
        logp, ent = self._logprobs(self.model, [inputs.trajectories[i] for i in chunk], True, True)
        logp_cat = torch.cat(logp)
        old = torch.cat([inputs.old_logp[i] for i in chunk]) if inputs.old_logp is not None else logp_cat.detach()
        ref = torch.cat([inputs.ref_logp[i] for i in chunk]) if inputs.ref_logp[0] is not None else None
        adv = torch.cat([inputs.advantages[i].expand(len(logp[k])) for k, i in enumerate(chunk)]).to(logp_cat.device)
        return mgpo_token_loss(
            logp_cat,
            old,
            ref,
            torch.cat(ent),  # type: ignore[arg-type]
            adv,
            clip_ratio=config.clip_ratio,
            kl_coef=config.kl_coef,
            entropy_coef=config.entropy_coef,
            normaliser=normaliser,
        )

    # ----------------------------------------------------------------- metrics
    def _metrics(
        self, trajectories: list[Trajectory], rewards: torch.Tensor, flat_groups: int, stats: dict[str, float], times: dict[str, float], drift: list[int], skipped: int = 0
    ) -> dict[str, Any]:
        from mgpo_env.geometry import box_area, contains, iou

        infos = [t.info for t in trajectories]
        grounded = [i for i in infos if i.get("protocol") != "single_turn"]
        valid = [bool(i.get("box_valid")) for i in grounded]
        crop_fraction = [
            box_area(i["crop_box"]) / (i["original_image_size"][0] * i["original_image_size"][1]) for i in grounded if i.get("crop_box")
        ]
        with_target = [i for i in grounded if i.get("target_box") is not None]
        hits = [bool(i.get("crop_box")) and contains(i["crop_box"], i["target_box"]) for i in with_target]
        ious = [iou(i["crop_box"], i["target_box"]) if i.get("crop_box") else 0.0 for i in with_target]
        lengths = [t.reply_lengths() for t in trajectories]
        local = {
            "reward_sum": float(rewards.sum()),
            "episodes": float(len(trajectories)),
            "correct": float(sum(bool(i.get("correct")) for i in infos)),
            "valid": float(sum(valid)),
            "grounded": float(len(grounded)),
            "crop_fraction_sum": float(sum(crop_fraction)),
            "crops": float(len(crop_fraction)),
            "hits": float(sum(hits)),
            "iou_sum": float(sum(ious)),
            "with_target": float(len(with_target)),
            "visual_tokens_sum": float(sum(i.get("visual_tokens_total", 0) for i in infos)),
            "reply1_sum": float(sum(l[0] for l in lengths if l)),
            "reply2_sum": float(sum(l[1] for l in lengths if len(l) > 1)),
            "reply2_count": float(sum(1 for l in lengths if len(l) > 1)),
            "truncated": float(sum(t.truncated_replies for t in trajectories)),
            "overlong": float(sum(bool(t.info.get("overlong")) for t in trajectories)),
            "skipped_samples": float(skipped),
            "flat_groups": float(flat_groups),
            "drift_sum": float(sum(drift)),
            "drift_rows": float(sum(1 for d in drift if d)),
            "drift_count": float(len(drift)),
        }
        keys = sorted(local)
        summed = self.accelerator.reduce(torch.tensor([local[k] for k in keys], dtype=torch.float64, device=self.accelerator.device), reduction="sum")
        g = dict(zip(keys, summed.tolist()))

        def ratio(a: str, b: str) -> float:
            return g[a] / g[b] if g[b] else float("nan")

        metrics = {
            "step": self.step,
            "reward_mean": ratio("reward_sum", "episodes"),
            "accuracy": ratio("correct", "episodes"),
            "valid_box_rate": ratio("valid", "grounded"),
            "mean_crop_fraction": ratio("crop_fraction_sum", "crops"),
            "hit_rate": ratio("hits", "with_target"),
            "mean_iou": ratio("iou_sum", "with_target"),
            "visual_tokens_per_episode": ratio("visual_tokens_sum", "episodes"),
            "reply1_tokens": ratio("reply1_sum", "episodes"),
            "reply2_tokens": ratio("reply2_sum", "reply2_count"),
            "truncated_replies": g["truncated"],
            "overlong_episodes": int(g["overlong"]),
            "skipped_samples": int(g["skipped_samples"]),
            "bad_samples_total": len(self.bad_samples),
            "zero_advantage_groups": int(g["flat_groups"]),
            "groups": self.config.prompts_per_step,
            "time_generation": times["generation"],
            "time_environment": times["environment"] + times["tokenization"],
            "time_learning": times["learning"],
        }
        metrics.update(stats)
        if self.config.check_token_drift:
            metrics["token_drift_mean"] = ratio("drift_sum", "drift_count")
            metrics["token_drift_rate"] = ratio("drift_rows", "drift_count")
        return metrics

    # ------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Optional[Path]:
        """Write ``checkpoints/step-N`` atomically (a temp folder renamed when complete).

        Every process takes part in gathering the full weights and optimizer state
        (:mod:`~mgpo_agents.checkpoint`); the main process writes them.
        """
        self.accelerator.wait_for_everyone()
        state = checkpoint_state.full_model_state(self.model)
        optimizer_state = checkpoint_state.full_optimizer_state(self.model, self.optimizer)
        if not self.accelerator.is_main_process:
            return None
        root = self.output_dir / "checkpoints"
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        temporary = root / f".{final.name}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        unwrapped = self.accelerator.unwrap_model(self.model)
        try:
            unwrapped.save_pretrained(temporary, state_dict=state, safe_serialization=True)
            self.processor.save_pretrained(temporary)
            torch.save(optimizer_state, temporary / "optimizer.pt")
            torch.save(checkpoint_state.rng_state(), temporary / "rng.pt")
            (temporary / "trainer_state.json").write_text(json.dumps(self._trainer_state(), indent=2))
        except OSError as error:  # disk full, quota, a vanished mount: keep what is on disk as it was
            shutil.rmtree(temporary, ignore_errors=True)
            last = latest_checkpoint(self.output_dir)
            raise CheckpointWriteError(
                f"could not write checkpoint {final} ({error}); its partial folder was removed and "
                + (f"the previous checkpoint, {last}, is intact: free space and run again with --resume" if last else "no earlier checkpoint exists")
            ) from error
        _replace_folder(temporary, final)
        # Only now that the new checkpoint is complete may old ones go.
        checkpoints = sorted(p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "trainer_state.json").exists())
        for old in checkpoints[: -self.config.keep_checkpoints]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def _trainer_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the loop besides weights, optimiser and RNG."""
        return {"step": self.step, "base_model": str(self.model_path), "skip_streak": self.skip_streak}

    def load_checkpoint(self, path: Optional[Path] = None) -> Path:
        """Restore weights, optimiser, RNG and step from ``path`` (default: the latest checkpoint).

        Whatever the number of processes and sharding that wrote it; every process must call.
        """
        path = Path(path) if path is not None else latest_checkpoint(self.output_dir)
        if path is None:
            raise FileNotFoundError(f"no checkpoint under {self.output_dir / 'checkpoints'} to resume from")
        from safetensors.torch import load_file

        unwrapped = self.accelerator.unwrap_model(self.model)
        if (path / "adapter_model.safetensors").exists():  # LoRA: the adapters only, the base stays as loaded
            adapter = checkpoint_state.adapter_module_state(self.model, load_file(str(path / "adapter_model.safetensors")))
            checkpoint_state.load_model_state(self.model, adapter, strict=False)
        else:
            # Load through transformers, which maps the saved key names back to the module's.
            saved = load_model(path, dtype=next(unwrapped.parameters()).dtype, trust_remote_code=self.config.trust_remote_code)
            checkpoint_state.load_model_state(self.model, saved.state_dict())
            del saved
        checkpoint_state.load_optimizer_state(self.model, self.optimizer, path / "optimizer.pt")
        checkpoint_state.set_rng_state(checkpoint_state.load_rng_state(path / "rng.pt"))
        trainer_state = json.loads((path / "trainer_state.json").read_text())
        self.step = int(trainer_state["step"])
        self.skip_streak = int(trainer_state.get("skip_streak", 0))
        return path


def progress_postfix(metrics: dict[str, Any]) -> dict[str, str]:
    """The progress bar's figures for a step: reward, accuracy and crop hit rate of its rollouts, and the KL."""
    figures = {"reward": metrics["reward_mean"], "acc": metrics["accuracy"], "hit": metrics["hit_rate"], "kl": metrics["kl"]}
    return {name: "n/a" if value != value else f"{value:.3f}" if name == "kl" else f"{value:.2f}" for name, value in figures.items()}


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    root = Path(output_dir) / "checkpoints"
    if not root.exists():
        return None
    checkpoints = sorted(p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "trainer_state.json").exists())
    return checkpoints[-1] if checkpoints else None


def _replace_folder(source: Path, target: Path) -> None:
    """Put the folder ``source`` at ``target``; an existing ``target`` (the same step saved again) is set aside first, then removed."""
    if not target.exists():
        os.replace(source, target)
        return
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(target, aside)
    os.replace(source, target)
    shutil.rmtree(aside, ignore_errors=True)


def _make_accelerator(config: MGPOConfig) -> Any:
    """accelerate's Accelerator (on the CPU where there is no GPU), over the process group the launch asks for.

    The group starts first (:func:`~mgpo_agents.sharding.start_process_group`: a timeout, clear errors
    for launches without one), and accelerate reuses it. Under FSDP accelerate only reports ranks and
    reduces figures: the trainer shards the model itself.
    """
    from accelerate import Accelerator

    start_process_group(config.distributed)
    return Accelerator(cpu=not torch.cuda.is_available())


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
