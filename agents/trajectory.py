"""Multi-turn trajectories kept as token ids, never decoded and re-encoded.

A two-turn MGPO trajectory is the concatenation

    [prompt] [reply 1] [environment message with the crop] [reply 2]
     mask 0   mask 1    mask 0                              mask 1

where the prompt and the environment's message are rendered by the processor's
own chat template (nothing is assembled by hand) and the replies are exactly
the ids the model sampled, its end-of-turn token included. Decoding a reply to
text and re-encoding it would not give back the same ids, and PPO would then
score tokens the model never produced.

How an environment message is tokenised: the chat template renders the whole
conversation before and after the message; the new text starts right after
the end-of-turn token that closes the model's last reply (for Qwen2.5-VL:
``"\\n<|im_start|>user\\n<|vision_start|><|image_pad|>...<|im_start|>assistant\\n"``).
That segment is tokenised on its own, with its image, by the processor, which
expands the image placeholder to the right number of visual tokens. Special
tokens at both ends keep BPE merges from crossing the seam, so the ids equal
those of a whole-conversation rendering; :func:`template_drift` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from PIL import Image

from .qwen_processor import image_token_id, mm_token_type_ids


@dataclass
class Segment:
    """A run of token ids, with whether the model generated them."""

    ids: list[int]
    generated: bool
    logprobs: Optional[list[float]] = None  # generation-time log-probs of generated ids


@dataclass
class Trajectory:
    """One episode as token ids, images and its reward."""

    group: int  # index of the question in the step (rollouts of a group share it)
    rollout: int  # index within the group
    sample_index: int
    segments: list[Segment] = field(default_factory=list)
    pixel_values: list[torch.Tensor] = field(default_factory=list)  # one (patches, dim) tensor per image, in order
    image_grid_thw: list[torch.Tensor] = field(default_factory=list)  # one (1, 3) tensor per image
    replies: list[str] = field(default_factory=list)  # decoded replies, for the environment and for logs
    reward: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # the environment's final info
    truncated_replies: int = 0  # replies cut at max_new_tokens (no end-of-turn token generated)
    record: Any = None  # an episode-store record, when rollouts are saved

    @property
    def input_ids(self) -> list[int]:
        return [i for s in self.segments for i in s.ids]

    @property
    def loss_mask(self) -> list[int]:
        """1 on ids the model generated (each reply and its end-of-turn token), 0 elsewhere."""
        return [int(s.generated) for s in self.segments for _ in s.ids]

    @property
    def generation_logprobs(self) -> list[float]:
        return [lp for s in self.segments if s.generated for lp in (s.logprobs or [float("nan")] * len(s.ids))]

    def reply_lengths(self) -> list[int]:
        return [len(s.ids) for s in self.segments if s.generated]

    def add_images(self, pixel_values: Optional[torch.Tensor], grid_thw: Optional[torch.Tensor]) -> None:
        """Append the images of a rendered segment, split one tensor per image."""
        if pixel_values is None or grid_thw is None:
            return
        counts = (grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2]).tolist()
        for chunk, grid in zip(torch.split(pixel_values, counts), grid_thw):
            self.pixel_values.append(chunk)
            self.image_grid_thw.append(grid.unsqueeze(0))


class ConversationTokenizer:
    """Renders prompts and environment messages to ids with the processor's chat template."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.end_of_turn = self.tokenizer.eos_token  # "<|im_end|>" for Qwen2.5-VL chat models
        if self.end_of_turn is None:
            raise ValueError("the tokenizer has no eos token, so the end of a reply cannot be found; set tokenizer.eos_token to the chat template's end-of-turn token")
        self.end_of_turn_id = self.tokenizer.convert_tokens_to_ids(self.end_of_turn)
        self.image_token_id = image_token_id(processor)

    def _text(self, messages: Sequence[dict], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)

    def _encode(self, text: str, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt", padding=False)
        return encoded

    def prompt(self, messages: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Ids and images of the conversation so far, ending with the assistant generation prompt."""
        return self._encode(self._text(messages, True), _images_of(messages))

    def environment_segment(self, messages: Sequence[dict], new_from: int) -> dict[str, torch.Tensor]:
        """Ids of the messages ``messages[new_from:]`` the environment appended after a reply.

        ``messages[new_from - 1]`` must be the model's reply. The segment starts
        right after that reply's end-of-turn token and ends with the next
        generation prompt.
        """
        if messages[new_from - 1]["role"] != "assistant":
            raise ValueError("environment_segment expects the message before new_from to be the model's reply")
        before = self._text(messages[:new_from], False)
        after = self._text(messages, True)
        if not after.startswith(before):
            raise ValueError(
                "the chat template is not prefix-consistent (rendering more messages changed earlier text), "
                "so a multi-turn trajectory cannot be kept token-exact with it"
            )
        cut = before.rindex(self.end_of_turn) + len(self.end_of_turn)
        return self._encode(after[cut:], _images_of(messages[new_from:]))

    def full_conversation_ids(self, messages: Sequence[dict]) -> list[int]:
        """The ids the chat template gives for a whole finished conversation (for drift checks)."""
        text = self._text(messages, False)
        return self._encode(text, _images_of(messages))["input_ids"][0].tolist()


def model_inputs(
    trajectories: Sequence[Trajectory], pad_id: int, image_token: int, *, left_pad: bool, device: Any = "cpu", dtype: Any = None
) -> dict[str, torch.Tensor]:
    """Padded ids, attention mask, ``mm_token_type_ids`` and the images of a batch of trajectories.

    Left padding is for generation (every row's next token in the same column),
    right padding for training passes. Images are concatenated in row order, as
    the model expects them.
    """
    width = max(len(t.input_ids) for t in trajectories)
    input_ids = torch.full((len(trajectories), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(trajectories), width), dtype=torch.long)
    for row, trajectory in enumerate(trajectories):
        ids = trajectory.input_ids
        columns = slice(width - len(ids), width) if left_pad else slice(0, len(ids))
        input_ids[row, columns] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, columns] = 1
    inputs = {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "mm_token_type_ids": mm_token_type_ids(input_ids, image_token).to(device),
    }
    pixel_values = [p for t in trajectories for p in t.pixel_values]
    if pixel_values:
        inputs["pixel_values"] = torch.cat(pixel_values).to(device, dtype)
        inputs["image_grid_thw"] = torch.cat([g for t in trajectories for g in t.image_grid_thw]).to(device)
    return inputs


def _images_of(messages: Sequence[dict]) -> list[Image.Image]:
    return [part["image"] for m in messages for part in (m["content"] if isinstance(m["content"], list) else []) if part.get("type") == "image"]


def template_drift(trajectory: Trajectory, reference_ids: Sequence[int]) -> int:
    """How many positions differ between a trajectory's ids and the template's rendering
    of the same conversation (plus the length difference). 0 means token-exact.

    The template rendering ends each reply with its end-of-turn token and a
    newline; the trajectory ends at the last reply's end-of-turn token, so the
    comparison is over the trajectory's length.
    """
    ids = trajectory.input_ids
    n = min(len(ids), len(reference_ids))
    mismatches = sum(1 for a, b in zip(ids[:n], reference_ids[:n]) if a != b)
    extra = max(0, len(ids) - len(reference_ids))
    return mismatches + extra
