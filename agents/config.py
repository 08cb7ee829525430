"""Every hyperparameter of a training run, in one dataclass.

Each field carries its help text; the ``mgpo train`` command line is generated
from these fields (``--learning-rate 1e-5``), so the two never disagree.
Presets give complete starting points: ``paper`` holds the published MGPO
settings (Qwen2.5-VL-7B, 8 GPUs), ``tiny-cpu`` a run that finishes in minutes
on two CPU cores with the project's tiny model.

Example:
    >>> config = preset("tiny-cpu", steps=3)
    >>> config.group_size, config.steps, config.protocol
    (8, 3, 'two_turn')
    >>> preset("paper").learning_rate
    1e-06
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgpo_datasets.synthetic import FRAME_COLOURS

PROTOCOLS = ("two_turn", "free", "single_turn")


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class MGPOConfig:
    """Configuration of an MGPO (or GRPO-baseline) run. See each field's help."""

    # ----------------------------------------------------------------- model
    model: str = _help(
        "Model directory (a local path works like a hub id; nothing is downloaded), or 'builtin:tiny' "
        "to build the project's tiny random-weight Qwen2.5-VL into the output folder.",
        default="builtin:tiny",
    )
    trust_remote_code: bool = _help("Allow the model directory's own Python code to run. Off unless you trust it.", default=False)
    dtype: str = _help("Weights dtype: 'auto' (bfloat16 on GPU, float32 on CPU), 'float32', 'bfloat16' or 'float16'.", default="auto")
    lora_rank: int = _help("LoRA rank (peft); 0 trains all weights.", default=0)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / rank).", default=16)
    lora_dropout: float = _help("LoRA dropout.", default=0.0)
    lora_target_modules: str = _help("Comma-separated module names LoRA adapts.", default="q_proj,k_proj,v_proj,o_proj")

    # ------------------------------------------------------------ environment
    dataset: str = _help("Training data: 'synthetic' or a spec such as 'mme-realworld:/data/mme/train.json'.", default="synthetic")
    dataset_kwargs: dict = _help("Keyword arguments of the dataset loader, as JSON (e.g. the synthetic task's canvas_size).", default_factory=dict)
    protocol: str = _help("'two_turn' (MGPO: box, crop, answer), 'single_turn' (the GRPO baseline: answer at once) or 'free'.", default="two_turn")
    max_turns: int = _help("Replies allowed in the free protocol.", default=4)
    min_pixels: int = _help("Smallest image shown to the model, in pixels (256*28*28 in the paper).", default=256 * 28 * 28)
    max_pixels: int = _help("Largest image shown to the model, in pixels (1280*28*28 in the paper).", default=1280 * 28 * 28)
    box_frame: str = _help("How the model writes coordinates: 'pixel' (Qwen2.5-VL), 'norm1000' or 'relative'.", default="pixel")
    env_kwargs: dict = _help("Any other HighResVQA-v0 keyword arguments, as JSON.", default_factory=dict)
    env_url: str = _help(
        "Play the training episodes on an 'mgpo serve' server at this URL (e.g. http://127.0.0.1:8000) instead of in "
        "this process; start it with the same dataset and environment options (checked at connection). Empty: local.",
        default="",
    )
    first_turn: str = _help(
        "Who plays turn 1 of a two_turn episode: '' (the policy) or a rule, so the policy only answers: 'random' "
        "(a free-form box independent of the image), 'oracle' (the smallest valid box around the annotated target) or "
        "'fixed:x1,y1,x2,y2' (one box in the box frame, every image). The baselines that could win without learned grounding.",
        default="",
    )
    validate_data: str = _help(
        "Check the training images before the first step: 'header' reads each stored image's header (fast; finds "
        "missing and non-image files), 'decode' decodes each one with a progress bar (also finds truncated files), "
        "'none' checks nothing. The data is only read, never changed.",
        default="header",
    )
    on_bad_sample: str = _help(
        "What an unreadable sample does: 'skip' plays the next readable sample in its place (so every step keeps its "
        "size; counted in the metrics and listed in output_dir/bad_samples.jsonl), 'error' stops the run at the first one.",
        default="skip",
    )
    max_bad_fraction: float = _help(
        "Stop the run when more than this share of the training samples has proved unreadable (0: stop at the first). "
        "A few bad files in a large set go by; a wrong image folder (every image missing) stops the run before its first step.",
        default=0.2,
    )

    # ---------------------------------------------------------------- rollout
    group_size: int = _help("Rollouts per question (GRPO group, n).", default=8)
    prompts_per_step: int = _help("Questions per optimisation step, across all processes.", default=512)
    temperature: float = _help("Sampling temperature of training rollouts.", default=1.0)
    top_p: float = _help("Nucleus sampling threshold of training rollouts.", default=1.0)
    max_new_tokens: int = _help("Most tokens the model may generate in one reply.", default=8192)
    max_episode_tokens: int = _help(
        "Most tokens an episode (prompt, images and replies) may hold (0: the model's context length). An episode "
        "whose next reply could pass it ends as truncated, with reward 0; the prompt is never cut.",
        default=0,
    )
    generation_batch_size: int = _help("Rollouts generated together in one batch (0: all of a step at once).", default=0)
    encode_images_once: bool = _help(
        "Run the vision tower once per distinct image of a batch: the G episodes of a group share their original "
        "image, so generation, reference and policy passes encode it once instead of G times. Exact; off encodes every copy.",
        default=True,
    )
    check_token_drift: bool = _help(
        "Re-render every trajectory through the processor's chat template and log how many token ids differ "
        "(the drift a decode/re-encode trainer would train on).",
        default=False,
    )

    # ------------------------------------------------------------------- loss
    clip_ratio: float = _help("PPO clip range epsilon: the ratio is clipped to [1 - eps, 1 + eps].", default=0.2)
    kl_coef: float = _help("Weight of the KL penalty to the frozen reference model (k3 estimator); 0 drops the reference.", default=0.01)
    entropy_coef: float = _help("Weight of the entropy bonus.", default=0.001)
    advantage_eps: float = _help("Epsilon in (r - mean) / (std + eps).", default=1e-6)
    lm_head_at_loss_positions: bool = _help(
        "Project only the hidden states that predict generated tokens onto the vocabulary (much less memory "
        "with a 151K vocabulary). Off: full logits, then select.",
        default=True,
    )

    # -------------------------------------------------------------- optimiser
    learning_rate: float = _help("AdamW learning rate (constant).", default=1e-6)
    weight_decay: float = _help("AdamW weight decay.", default=0.01)
    max_grad_norm: float = _help("Gradient clipping norm.", default=1.0)
    mini_batch_prompts: int = _help("Questions per optimiser update (a step with more questions makes several updates).", default=128)
    ppo_epochs: int = _help("Passes over a step's rollouts.", default=1)
    micro_batch_size: int = _help("Trajectories per forward/backward pass (gradient accumulation over the mini-batch).", default=8)
    max_consecutive_skips: int = _help(
        "An update whose loss or gradient is not finite is skipped (no optimiser step); this many skipped updates "
        "in a row stop the run, the last checkpoint intact.",
        default=5,
    )

    # -------------------------------------------------------------------- run
    steps: int = _help("Optimisation steps.", default=80)
    seed: int = _help("Seed of data order, sampling and initialisation.", default=0)
    output_dir: str = _help("Folder for metrics, checkpoints, plots and the saved config.", default="runs/mgpo")
    save_every: int = _help("Write a checkpoint every N steps (and at the end).", default=10)
    keep_checkpoints: int = _help("Checkpoints kept on disk (older ones are deleted, only once a newer one is complete).", default=2)
    save_rollouts_every: int = _help("Store the rollouts of every N-th step in output_dir/episodes (0: never).", default=0)
    eval_every: int = _help("Evaluate every N steps (0: only before and after training).", default=0)
    eval_dataset: str = _help("Evaluation data spec (empty: no evaluation).", default="")
    eval_dataset_kwargs: dict = _help("Keyword arguments of the evaluation dataset loader, as JSON.", default_factory=dict)
    eval_samples: int = _help("Questions evaluated (0: all).", default=0)
    save_eval_episodes: bool = _help("Store every evaluation episode in output_dir/episodes (split 'eval'), for the report.", default=False)
    report: bool = _help("Write the HTML report (output_dir/report.html) when training ends.", default=False)
    torch_threads: int = _help(
        "CPU threads torch may use (0: torch's default). Small models on a busy machine run far faster on 1: "
        "spinning threads that wait for a core cost more than the matrix products they split.",
        default=0,
    )
    distributed: str = _help(
        "Multi-process strategy: 'ddp' (data parallel through accelerate; also one plain process) or 'fsdp' "
        "(torch's fully_shard per block: weights, gradients, optimizer state and reference split between processes; "
        "needs a launcher such as torchrun or accelerate launch --multi_gpu).",
        default="ddp",
    )
    tensorboard: bool = _help("Also write TensorBoard event files.", default=True)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and the allowed values for any bad setting."""
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(f"invalid config: {message}")

        need(self.protocol in PROTOCOLS, f"protocol={self.protocol!r}; choose one of {PROTOCOLS}")
        if self.first_turn:
            from mgpo_env.scripted_turn import check_rule

            need(self.protocol == "two_turn", f"first_turn={self.first_turn!r} plays turn 1 of a two_turn episode; protocol is {self.protocol!r}")
            need(not self.env_url, "first_turn wraps local environments; leave env_url empty")
            problem = check_rule(self.first_turn)
            need(problem is None, str(problem))
        need(not (self.env_url and self.save_rollouts_every > 0), "save_rollouts_every records from local environments; set it to 0 with env_url")
        need(self.box_frame in ("pixel", "norm1000", "relative"), f"box_frame={self.box_frame!r}; choose 'pixel', 'norm1000' or 'relative'")
        need(self.dtype in ("auto", "float32", "bfloat16", "float16"), f"dtype={self.dtype!r}; choose auto, float32, bfloat16 or float16")
        need(self.distributed in ("ddp", "fsdp"), f"distributed={self.distributed!r}; choose 'ddp' or 'fsdp'")
        need(self.group_size >= 2, f"group_size={self.group_size}; a GRPO group needs at least 2 rollouts")
        need(self.prompts_per_step >= 1, f"prompts_per_step={self.prompts_per_step}; must be >= 1")
        need(1 <= self.mini_batch_prompts <= self.prompts_per_step, f"mini_batch_prompts={self.mini_batch_prompts}; must be in [1, prompts_per_step={self.prompts_per_step}]")
        need(self.prompts_per_step % self.mini_batch_prompts == 0, f"prompts_per_step={self.prompts_per_step} must be a multiple of mini_batch_prompts={self.mini_batch_prompts}")
        need(self.micro_batch_size >= 1, f"micro_batch_size={self.micro_batch_size}; must be >= 1")
        need(self.ppo_epochs >= 1, f"ppo_epochs={self.ppo_epochs}; must be >= 1")
        need(self.steps >= 0, f"steps={self.steps}; must be >= 0")
        need(self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens}; must be >= 1")
        need(self.temperature > 0, f"temperature={self.temperature}; must be > 0 (evaluation is greedy on its own)")
        need(0 < self.top_p <= 1, f"top_p={self.top_p}; must be in (0, 1]")
        need(0 < self.clip_ratio < 1, f"clip_ratio={self.clip_ratio}; must be in (0, 1)")
        need(self.kl_coef >= 0 and self.entropy_coef >= 0, "kl_coef and entropy_coef must be >= 0")
        need(self.learning_rate > 0, f"learning_rate={self.learning_rate}; must be > 0")
        need(self.max_grad_norm > 0, f"max_grad_norm={self.max_grad_norm}; must be > 0")
        need(self.torch_threads >= 0, f"torch_threads={self.torch_threads}; must be >= 0")
        need(self.lora_rank >= 0, f"lora_rank={self.lora_rank}; must be >= 0")
        need(self.max_turns >= 1, f"max_turns={self.max_turns}; must be >= 1")
        need(self.min_pixels <= self.max_pixels, f"min_pixels={self.min_pixels} > max_pixels={self.max_pixels}")
        need(self.validate_data in ("none", "header", "decode"), f"validate_data={self.validate_data!r}; choose 'none', 'header' or 'decode'")
        need(self.on_bad_sample in ("skip", "error"), f"on_bad_sample={self.on_bad_sample!r}; choose 'skip' or 'error'")
        need(0 <= self.max_bad_fraction <= 1, f"max_bad_fraction={self.max_bad_fraction}; must be in [0, 1]")
        need(self.max_consecutive_skips >= 1, f"max_consecutive_skips={self.max_consecutive_skips}; must be >= 1")
        need(self.max_episode_tokens >= 0, f"max_episode_tokens={self.max_episode_tokens}; must be >= 0 (0: the model's context)")
        need(self.save_every >= 1 and self.keep_checkpoints >= 1, "save_every and keep_checkpoints must be >= 1")
        for name in ("dataset_kwargs", "env_kwargs", "eval_dataset_kwargs"):
            need(isinstance(getattr(self, name), dict), f"{name} must be a JSON object (dict)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "MGPOConfig":
        data = json.loads(Path(path).read_text())
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MGPOConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"invalid config: unknown field(s) {unknown}")
        return cls(**data)


# The tiny-cpu preset's synthetic task; training and evaluation draw different samples of it.
_TINY_TASK = {"canvas_size": 1792, "target_size": 96, "grid": 8, "checker_square": 4, "glyph_cell": 6, "shape_size": 24, "clutter": 30}

# The miniature experiment's task (benchmarks/emergence/): an 896-px canvas shown at 224 px, the target's
# checker readable only in a crop; boxes of one of 2 x 2 cells. The experiment reads these settings from here.
EMERGENCE_TASK: dict[str, Any] = dict(
    canvas_size=896,
    target_size=128,  # 32 view pixels: the frame shows as a dark outline, the checker as flat gray
    grid=4,  # = the view's downsampling factor: checker period 4, frame 4 px, all aligned to 4
    checker_square=2,  # 1 pixel in a cell's crop: the colours alternate pixel by pixel there
    clutter=12,
    cells=2,
    question_types=["colour"],
    shuffle_choices=False,
)
# Short prompts: the tiny model reads every token of them at every step.
EMERGENCE_TEMPLATES: dict[str, str] = {
    "system_two_turn": "Reply 1: the box [x1,y1,x2,y2] of the key region. Reply 2: {answer_instruction}.",
    "user_grounding": "{question}",
    "user_after_crop": "{question}\n{options}",
    "user_after_invalid_box": "{question}\n{options}",
    "system_single_turn": "Reply: {answer_instruction}.",
    "user_single_turn": "{question}\n{options}",
}
EMERGENCE_TRAIN_SEED, EMERGENCE_EVAL_SEED = 0, 1  # the held-out questions are never trained on

# The free-form experiment's task (benchmarks/emergence/freeform_task.py gives the reason for each value):
# a 2240-px canvas shown at 308 px, every image at 128 visual tokens; one target in a frame of the colour the
# question names, holding a noisy 2-px checker that only a tight crop reveals; two question types.
FREEFORM_TASK: dict[str, Any] = dict(
    canvas_size=2240,
    target_sizes=(256, 288),
    grid=4,
    frame_width=56,
    frame_colours=tuple(FRAME_COLOURS),
    candidates=1,
    checker_square=2,
    pattern_amplitude=14,
    pattern_noise=95,
    clutter=30,
    question_types=["colour", "checker_half"],
    shuffle_choices=True,
)
FREEFORM_EVAL_SEED = 21  # the experiment's probe seed: its comparison keeps a seed of its own

# What the miniature's two MGPO jobs share (the presets below): the tiny model's small replies and images, the
# experiment's prompts, a KL to the start, checkpoints, rollouts, evaluation episodes and the HTML report kept.
_MINIATURE_JOB: dict[str, Any] = dict(
    dataset="synthetic",
    protocol="two_turn",
    min_pixels=32 * 28 * 28,
    box_frame="pixel",
    env_kwargs={"templates": EMERGENCE_TEMPLATES, "image_after_text": True},
    micro_batch_size=32,
    temperature=1.0,
    max_new_tokens=24,  # the longest reply, "[112,112,224,224]", is 17 tokens plus the end-of-turn token
    kl_coef=0.05,
    entropy_coef=0.0,
    weight_decay=0.0,
    steps=40,
    save_every=20,
    keep_checkpoints=1,
    save_rollouts_every=10,
    dtype="float32",
    torch_threads=2,  # the main job has the machine to itself (the experiment's parallel runs take 1 each)
    eval_dataset="synthetic",
    save_eval_episodes=True,
    report=True,
)

PRESETS: dict[str, dict[str, Any]] = {
    # The published settings (mgpo-reference.md): Qwen2.5-VL-7B, 21K MME-RealWorld questions,
    # 512 prompts x 8 rollouts a step, mini-batches of 128 prompts, lr 1e-6, 8 GPUs.
    "paper": dict(
        model="Qwen2.5-VL-7B-Instruct",
        dataset="mme-realworld:data/mme_realworld/train.json",
        protocol="two_turn",
        group_size=8,
        prompts_per_step=512,
        mini_batch_prompts=128,
        micro_batch_size=8,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=8192,
        clip_ratio=0.2,
        kl_coef=0.01,
        entropy_coef=0.001,
        learning_rate=1e-6,
        weight_decay=0.01,
        max_grad_norm=1.0,
        min_pixels=256 * 28 * 28,
        max_pixels=1280 * 28 * 28,
        steps=80,
        dtype="auto",
    ),
    # Minutes on two CPU cores: the tiny model on a small synthetic canvas.
    "tiny-cpu": dict(
        model="builtin:tiny",
        dataset="synthetic",
        dataset_kwargs={"num_samples": 256, **_TINY_TASK},
        protocol="two_turn",
        min_pixels=32 * 28 * 28,
        max_pixels=64 * 28 * 28,
        group_size=8,
        prompts_per_step=2,
        mini_batch_prompts=2,
        micro_batch_size=16,
        temperature=1.0,
        max_new_tokens=24,
        learning_rate=1e-4,
        kl_coef=0.01,
        steps=20,
        save_every=10,
        dtype="float32",
        torch_threads=1,
        eval_dataset="synthetic",
        eval_dataset_kwargs={"num_samples": 32, "seed": 1, **_TINY_TASK},
        eval_samples=16,
    ),
    # The cell version of the miniature (superseded): MGPO from its committed warm-start checkpoint (run from the repository
    # root, or point --model at a copy). In under four minutes on two cores, held-out accuracy and crop hit rate rise by 0.3
    # or more (lr 4e-4 is fast but not stable for long: 100 steps of it fall back towards chance).
    "emergence": dict(
        _MINIATURE_JOB,
        model="benchmarks/checkpoints/emergence-warmstart",
        dataset_kwargs={"num_samples": 2000, "seed": EMERGENCE_TRAIN_SEED, **EMERGENCE_TASK},
        max_pixels=64 * 28 * 28,
        group_size=8,
        prompts_per_step=4,
        mini_batch_prompts=4,
        learning_rate=4e-4,
        eval_dataset_kwargs={"num_samples": 200, "seed": EMERGENCE_EVAL_SEED, **EMERGENCE_TASK},
    ),
    # `make run`: MGPO on the free-form task from its committed base (run from the repository root, or point --model at
    # a copy), with the experiment's trainer settings (benchmarks/emergence/freeform_rl.py).
    "freeform": dict(
        _MINIATURE_JOB,
        model="benchmarks/checkpoints/freeform-base",
        dataset_kwargs={"num_samples": 2000, "seed": EMERGENCE_TRAIN_SEED, **FREEFORM_TASK},
        max_pixels=128 * 28 * 28,
        group_size=16,
        prompts_per_step=2,
        mini_batch_prompts=2,
        top_p=0.7,  # at 1.0 four sampled boxes in ten slip a digit
        learning_rate=3e-5,
        eval_dataset_kwargs={"num_samples": 100, "seed": FREEFORM_EVAL_SEED, **FREEFORM_TASK},
    ),
}


def preset(name: str, **overrides: Any) -> MGPOConfig:
    """A preset's config with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    values.update(overrides)
    return MGPOConfig(**values)


# ------------------------------------------------------------------ the CLI
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field, with the field's help text; unset flags keep the preset's value."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny-cpu", help="starting values (default: tiny-cpu)")
    parser.add_argument("--config", type=Path, help="a saved config.json to start from instead of a preset")
    hints = typing.get_type_hints(MGPOConfig)
    group = parser.add_argument_group("configuration (overrides the preset)")
    for f in dataclasses.fields(MGPOConfig):
        kind = hints[f.name]
        converter = {bool: _parse_bool, int: int, float: float, str: str, dict: _parse_json_object}.get(kind, str)
        metavar = {bool: "BOOL", dict: "JSON"}.get(kind, f.name.split("_")[-1].upper())
        flag = _flag(f.name)
        group.add_argument(flag, dest=f.name, type=converter, default=None, metavar=metavar, help=f.metadata["help"])


def config_from_args(args: argparse.Namespace) -> MGPOConfig:
    """The config a parsed command line describes: preset (or --config), then overrides."""
    base = MGPOConfig.load(args.config).to_dict() if getattr(args, "config", None) else dict(PRESETS[args.preset])
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(MGPOConfig) if getattr(args, f.name, None) is not None}
    base.update(follow_dataset(base, overrides))
    base.update(overrides)
    return MGPOConfig.from_dict(base)


def follow_dataset(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What newly named training or evaluation data change besides their names.

    Their loader options start empty (the preset's options belong to the preset's dataset: the
    synthetic task's ``num_samples`` means nothing to a JSONL file), and an evaluation the base
    config had follows new training data unless the evaluation data is named too.

    >>> base = dict(dataset="synthetic", dataset_kwargs={"num_samples": 8}, eval_dataset="synthetic", eval_dataset_kwargs={"seed": 1})
    >>> follow_dataset(base, {"dataset": "jsonl:train.jsonl"})
    {'dataset_kwargs': {}, 'eval_dataset': 'jsonl:train.jsonl', 'eval_dataset_kwargs': {}}
    >>> follow_dataset(base, {"dataset": "jsonl:a.jsonl", "eval_dataset": "jsonl:b.jsonl"})
    {'dataset_kwargs': {}, 'eval_dataset_kwargs': {}}
    >>> follow_dataset(base, {"dataset": "synthetic"})
    {}
    """
    changes: dict[str, Any] = {}
    dataset = overrides.get("dataset")
    if dataset is not None and dataset != base.get("dataset"):
        changes["dataset_kwargs"] = {}
        if base.get("eval_dataset") and "eval_dataset" not in overrides:
            changes["eval_dataset"] = dataset
            changes["eval_dataset_kwargs"] = dict(overrides.get("dataset_kwargs", {}))
    eval_dataset = overrides.get("eval_dataset")
    if eval_dataset is not None and eval_dataset != base.get("eval_dataset"):
        changes["eval_dataset_kwargs"] = {}
    return changes


__all__ = ["MGPOConfig", "PRESETS", "preset", "add_config_arguments", "config_from_args", "follow_dataset"]
