"""Train on ``mgpo/HighResVQA-v0`` with TRL's ``GRPOTrainer``: the crop is a tool that returns an image.

TRL (>= 1.x) runs multi-turn rollouts through ``environment_factory``: one
environment object per rollout; its public methods become tools the model calls
with ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``; a tool may
return a list of content blocks with images, which TRL shows the model in the
next turn (tokens of tool results are masked out of the loss); ``reset(**row)``
may return content to append to the prompt. This module provides:

* :class:`HighResVQAToolEnv`: the per-rollout object. ``reset`` puts the sample's
  shrunk image (the environment's first view) into the prompt; the tool
  ``crop(x1, y1, x2, y2)`` crops the *original* there and returns the crop as an
  image. Behind it is a real :class:`~mgpo_env.highres_vqa.HighResVQAEnv` in
  ``"free"`` protocol, so boxes are parsed, validated (``BoxPolicy``), mapped
  and cropped exactly as in the environment, within its pixel budget. The
  reward comes from the model's final text, graded by
  :func:`mgpo_env.grading.answer_reward` (pass it in ``reward_funcs``).
* :class:`HighResVQAAnswerToolEnv`: the same plus an ``answer(option)`` tool;
  the *environment* grades the answer and owns the reward (``get_reward``, which
  TRL picks up by itself; no ``reward_funcs`` needed).
* :func:`build_prompt_dataset`: a ``datasets.Dataset`` of prompts from the
  environment's dataset, with the ``answer``/``choices`` columns
  :func:`~mgpo_env.grading.answer_reward` reads and the ``sample_id`` ``reset`` reads.
* :func:`make_environment_factory`: the zero-argument factory TRL wants, sharing
  one loaded dataset and one image cache among all rollouts (a GRPO group decodes
  its image once).
* :func:`enable_tool_calling`: Qwen2.5-VL's published chat template has no tool
  support (it renders neither ``tools`` nor ``tool_calls`` nor ``tool`` messages),
  so ``GRPOTrainer`` refuses it (``trl/trainer/grpo_trainer.py``: "The provided
  chat template does not support tool calling", checked by
  ``trl.chat_template_utils.supports_tool_calling``) and has no response parser
  for it (``trl.chat_template_utils.add_response_schema``). This swaps in TRL's
  ``qwen3_vl`` template: Qwen's own Hermes-style ``<tool_call>`` format (the one
  Qwen2.5 uses) with Qwen2.5-VL's vision tokens, images allowed in tool results;
  TRL knows how to parse it and has a training variant of it.

What was checked with the installed TRL 1.16 / transformers 5.24, on CPU, with the
tiny Qwen2.5-VL of :mod:`mgpo_agents.tiny_model` (``tests/test_trl_adapter.py``):
``GRPOTrainer`` steps with both environments; the prompt image (from ``reset``) and
the crop (from the tool) reach generation *and* the training forward pass (image
tokens equal image features, ``mm_token_type_ids`` set, so TRL's "drop all images
on a mismatch" fallback, ``grpo_trainer.py`` ~l.2619, did not fire); tool-result
tokens are masked out of the loss; rewards come from
:func:`~mgpo_env.grading.answer_reward` or from ``get_reward``; weights change.
The random tiny model never writes a well-formed tool call, so those tests script
``model.generate``; everything after sampling is TRL's own code.

Limits to know:

* TRL's tool protocol is not the published MGPO protocol: the model *chooses* to
  call ``crop`` (zero, one or ``max_crops`` times) in Qwen's ``<tool_call>`` JSON,
  whereas MGPO's two-turn template always asks for a box in plain text first.
  For the exact MGPO rollout, use this package's own trainer (or TRL's ``rollout_func``).
* Keep ``max_completion_length`` above the tokens of a crop (up to ``max_pixels /
  28**2`` visual tokens) plus text: TRL drops a tool result that would overflow
  it, and drops every image of the batch if image tokens get truncated.
* The images are fitted to the environment's pixel budget before TRL sees them;
  give the processor a budget at least as large (Qwen's default is), or it resizes
  them again and the pixel coordinates the model writes no longer match the image.

Example (no model needed; training is in ``docs/other_algorithms.md``)::

    >>> factory = make_environment_factory(dataset_kwargs={"num_samples": 4, "canvas_size": 512}, max_crops=2)
    >>> dataset = build_prompt_dataset(dataset_kwargs={"num_samples": 4, "canvas_size": 512})
    >>> sorted(dataset.column_names)
    ['answer', 'choices', 'prompt', 'question', 'sample_id']
    >>> env = factory()
    >>> content = env.reset(**dataset[0])
    >>> [part["type"] for part in content]
    ['image', 'text']
    >>> result = env.crop(0, 0, 200, 200)
    >>> [part["type"] for part in result], result[0]["image"].size
    (['image', 'text'], (476, 476))
    >>> env.crop(0, 0, 10, 10)
    'Invalid region: box is 10 x 10 view pixels; both sides must be longer than 28. Give another region or answer.'
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from mgpo_env.grading import answer_reward
from mgpo_env.highres_vqa import HighResVQAEnv
from mgpo_env.image_store import DEFAULT_CACHE_BYTES, ImageStore
from mgpo_datasets.sample import Sample
from mgpo_datasets.registry import resolve_dataset
from mgpo_env.templates import FRAME_DESCRIPTIONS, format_options

__all__ = [
    "SYSTEM_PROMPT",
    "HighResVQAToolEnv",
    "HighResVQAAnswerToolEnv",
    "answer_reward",
    "build_prompt_dataset",
    "enable_tool_calling",
    "make_environment_factory",
    "tool_chat_template",
]

SYSTEM_PROMPT = (
    "You answer questions about high-resolution images. The image you are shown is shrunk, so small details "
    "in it may be unreadable. To see a region at full resolution, call the `crop` tool with its box "
    "(x1, y1, x2, y2); coordinates are {frame}. You may crop up to {max_crops} times. Then reason briefly and "
    "{answer_instruction}."
)
ANSWER_WITH_TEXT = "put the letter of the correct option inside \\boxed{}"
ANSWER_WITH_TOOL = "give the letter of the correct option with the `answer` tool"


class HighResVQAToolEnv:
    """One TRL rollout: the sample's image in the prompt, and a ``crop`` tool (see the module docstring).

    Args:
        dataset: a loaded sequence of :class:`~mgpo_datasets.sample.Sample` (shared by all rollouts) or a dataset spec.
        max_crops: how many valid or invalid ``crop`` calls a rollout may make.
        image_store: a shared decoded-image cache (``None``: a private one).
        env_url: play on an ``mgpo serve`` server instead (started with ``--env-kwargs
            '{"protocol": "free", "max_turns": max_crops + 1, ...}'``, checked at connection);
            the dataset and the environment options are then the server's, and ``sample`` is ``None``.
        image_format: the images' encoding from a server: ``"png"`` (the exact pixels) or ``"jpeg"``.
        **env_kwargs: passed to :class:`~mgpo_env.highres_vqa.HighResVQAEnv`
            (``min_pixels``, ``max_pixels``, ``box_frame``, ``box_policy``, ``box_reference``, ...).
    """

    def __init__(
        self,
        dataset: Union[Sequence[Sample], str] = "synthetic",
        *,
        dataset_kwargs: Optional[Mapping[str, Any]] = None,
        max_crops: int = 1,
        image_store: Optional[ImageStore] = None,
        env_url: str = "",
        image_format: str = "png",
        **env_kwargs: Any,
    ) -> None:
        if max_crops < 1:
            raise ValueError(f"max_crops must be >= 1, got {max_crops}")
        for fixed in ("protocol", "max_turns"):
            if fixed in env_kwargs:
                raise ValueError(f"{fixed} is set by the adapter (free protocol, max_crops + 1 replies); use max_crops")
        # "free" protocol: every reply is a box or a final answer. Each crop call is one
        # box reply; max_turns leaves one reply for the answer.
        if env_url:
            if env_kwargs or dataset_kwargs:
                raise ValueError(f"with env_url the server fixes the environment; drop {sorted(env_kwargs) + (['dataset_kwargs'] if dataset_kwargs else [])}")
            from mgpo_env.remote.client import RemoteHighResVQAEnv

            self.env: Any = RemoteHighResVQAEnv(env_url, image_format=image_format, expect={"protocol": "free", "max_turns": max_crops + 1})
        else:
            self.env = HighResVQAEnv(dataset, dataset_kwargs=dataset_kwargs, protocol="free", max_turns=max_crops + 1, **env_kwargs)
            if image_store is not None:
                self.env.images = image_store
        self.started = False
        self.max_crops = int(max_crops)
        self.crops_used = 0
        self.last_info: dict[str, Any] = {}

    # --------------------------------------------------------------- TRL hooks
    def reset(self, sample_id: Optional[str] = None, index: Optional[int] = None, **row: Any) -> list[dict[str, Any]]:
        """Start the rollout on the row's sample; return the image (and its size) to append to the prompt."""
        if sample_id is not None:
            options: Optional[dict[str, Any]] = {"sample_id": sample_id}
        elif index is not None:
            options = {"index": int(index)}
        else:
            options = None  # the environment draws a sample (a dataset-free GRPOTrainer run)
        _, info = self.env.reset(options=options)
        self.started = True
        self.crops_used = 0
        self.last_info = info
        view = self.env.chat_images()[0]
        return [
            {"type": "image", "image": view},
            {"type": "text", "text": f"\n(The image is {view.width}x{view.height} pixels.)"},
        ]

    def crop(self, x1: float, y1: float, x2: float, y2: float) -> Union[list[dict[str, Any]], str]:
        """Show a region of the image at full resolution: it is cut from the original image and enlarged.

        Args:
            x1: left edge of the region, in the coordinates described in the system prompt.
            y1: top edge of the region.
            x2: right edge of the region (greater than x1).
            y2: bottom edge of the region (greater than y1).

        Returns:
            The enlarged region as an image, or a message saying why the region was not valid.
        """
        if not self.started:
            raise RuntimeError("crop() before reset()")
        if self.crops_used >= self.max_crops:
            return "No crops left: answer now."
        try:
            coords = [float(v) for v in (x1, y1, x2, y2)]
        except (TypeError, ValueError):
            return "Invalid region: x1, y1, x2, y2 must be numbers. Give another region or answer."
        if not all(math.isfinite(v) for v in coords):
            return "Invalid region: coordinates must be finite numbers. Give another region or answer."
        self.crops_used += 1
        # A plain bracketed quadruple keeps the floats exact (format_box would round pixels).
        _, _, _, _, info = self.env.step("[" + ", ".join(repr(v) for v in coords) + "]")
        self.last_info = info
        if not info["box_valid"]:
            return f"Invalid region: {info['box_error']}. Give another region or answer."
        crop = self.env.chat_images()[-1]
        x1o, y1o, x2o, y2o = info["crop_box"]
        return [
            {"type": "image", "image": crop},
            {"type": "text", "text": f"Region ({x1o}, {y1o}, {x2o}, {y2o}) of the original, shown at {crop.width}x{crop.height} pixels."},
        ]

    # ------------------------------------------------------------ inspection
    @property
    def sample(self) -> Optional[Sample]:
        """The sample of the current rollout (``None`` on a server: the client does not see the answer)."""
        return getattr(self.env, "sample", None)


class HighResVQAAnswerToolEnv(HighResVQAToolEnv):
    """:class:`HighResVQAToolEnv` plus an ``answer`` tool; the environment grades it and owns the reward.

    TRL calls :meth:`get_reward` once per finished rollout (weight 1, logged under
    this class's name), so ``GRPOTrainer`` needs no ``reward_funcs``. A rollout
    that never calls ``answer`` gets 0.0.

    Example:
        >>> env = make_environment_factory(HighResVQAAnswerToolEnv, dataset_kwargs={"num_samples": 2, "canvas_size": 512})()
        >>> _ = env.reset(index=0)
        >>> env.answer(env.sample.answer), env.get_reward()
        ('Answer recorded.', 1.0)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reward = 0.0
        self.answered = False

    def reset(self, sample_id: Optional[str] = None, index: Optional[int] = None, **row: Any) -> list[dict[str, Any]]:
        self.reward = 0.0
        self.answered = False
        return super().reset(sample_id=sample_id, index=index, **row)

    def answer(self, option: str) -> str:
        """Give the final answer. Call it once, after looking closely enough.

        Args:
            option: the letter of the correct option, for example "B".

        Returns:
            A confirmation; the answer is graded when the conversation ends.
        """
        if self.answered:
            return "You already answered."
        # The environment grades a \boxed{} reply as the final answer and ends the episode.
        _, reward, _, _, info = self.env.step(f"\\boxed{{{option}}}")
        self.last_info = info
        self.reward = float(reward)
        self.answered = True
        return "Answer recorded."

    def get_reward(self) -> float:
        """The environment's reward for this rollout: 1.0 for a correct answer, else 0.0."""
        return self.reward


def make_environment_factory(
    env_class: type[HighResVQAToolEnv] = HighResVQAToolEnv,
    dataset: Any = "synthetic",
    *,
    dataset_kwargs: Optional[Mapping[str, Any]] = None,
    image_cache_bytes: int = DEFAULT_CACHE_BYTES,
    env_url: str = "",
    **env_kwargs: Any,
) -> Callable[[], HighResVQAToolEnv]:
    """The zero-argument ``environment_factory`` for ``GRPOTrainer``.

    The dataset is resolved once and every instance shares it and one image cache,
    so the G rollouts of a group (same sample) decode its image once. With ``env_url``
    every instance is a session on that ``mgpo serve`` server (which shares its cache).
    """
    if env_url:
        return lambda: env_class(env_url=env_url, **env_kwargs)
    samples = resolve_dataset(dataset, **dict(dataset_kwargs or {}))
    store = ImageStore(image_cache_bytes, max_image_pixels=env_kwargs.get("max_image_pixels", 16_384 * 16_384))

    def factory() -> HighResVQAToolEnv:
        return env_class(samples, image_store=store, **env_kwargs)

    return factory


def build_prompt_dataset(
    dataset: Any = "synthetic",
    *,
    dataset_kwargs: Optional[Mapping[str, Any]] = None,
    indices: Optional[Sequence[int]] = None,
    max_crops: int = 1,
    box_frame: str = "pixel",
    answer_tool: bool = False,
    system_prompt: str = SYSTEM_PROMPT,
) -> Any:
    """A ``datasets.Dataset`` of conversational prompts for ``GRPOTrainer``, one row a sample.

    Columns: ``prompt`` (a system message and the question with its options; the
    image is appended by ``reset``), ``sample_id`` (read by ``reset``), ``question``,
    ``answer`` and ``choices`` (read by :func:`~mgpo_env.grading.answer_reward`).
    ``box_frame``, ``max_crops`` and ``answer_tool`` only change the instructions:
    give the environment the same values.

    Example:
        >>> ds = build_prompt_dataset(dataset_kwargs={"num_samples": 3, "canvas_size": 512}, indices=[2, 0])
        >>> list(ds["sample_id"]), ds[0]["prompt"][1]["role"]
        (['synthetic-0-2', 'synthetic-0-0'], 'user')
    """
    from datasets import Dataset

    samples = resolve_dataset(dataset, **dict(dataset_kwargs or {}))
    system = system_prompt.format(
        frame=FRAME_DESCRIPTIONS[box_frame],
        max_crops=max_crops,
        answer_instruction=ANSWER_WITH_TOOL if answer_tool else ANSWER_WITH_TEXT,
    )
    rows: dict[str, list[Any]] = {"prompt": [], "sample_id": [], "question": [], "answer": [], "choices": []}
    for index in indices if indices is not None else range(len(samples)):
        sample = samples[index]
        text = sample.question if not sample.choices else f"{sample.question}\n{format_options(sample.choices)}"
        rows["prompt"].append([{"role": "system", "content": system}, {"role": "user", "content": text}])
        rows["sample_id"].append(sample.sample_id)
        rows["question"].append(sample.question)
        rows["answer"].append(sample.answer)
        rows["choices"].append(list(sample.choices))
    return Dataset.from_dict(rows)


def tool_chat_template() -> str:
    """A Qwen2.5-VL chat template that renders tools, tool calls and tool results with images.

    It is TRL's ``qwen3_vl`` template: the Hermes ``<tool_call>`` JSON format of
    Qwen2.5 with the ``<|vision_start|><|image_pad|><|vision_end|>`` image tokens
    Qwen2.5-VL uses. TRL recognises it: it sets the tool-call parser and switches
    to its training variant where needed.
    """
    from trl.chat_template_utils import qwen3_vl_chat_template

    return qwen3_vl_chat_template


def enable_tool_calling(processor: Any) -> Any:
    """Give ``processor`` (and its tokenizer) :func:`tool_chat_template`; return it.

    Needed for Qwen2.5-VL with ``GRPOTrainer(tools=...)`` or ``environment_factory``
    (see the module docstring for what TRL checks).
    """
    template = tool_chat_template()
    processor.chat_template = template
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.chat_template = template
    return processor
