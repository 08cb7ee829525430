"""Rollouts: G episodes per question, generation batched across groups and questions.

For each question of a step, G environments are reset on the same sample (they
share one decoded image). Each turn, every unfinished episode's trajectory so
far is generated in one batch (left-padded; the images of all rows concatenated
in row order), each reply is handed to its environment as text, and the
environment's next message is appended as ids (see :mod:`mgpo_agents.trajectory`).
The rollout ends when every environment has terminated.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import gymnasium as gym
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from mgpo_datasets.sample import DataError

from .sampling import RowSeededSampler, row_seed
from .shared_images import encode_each_image_once
from .trajectory import ConversationTokenizer, Segment, Trajectory, model_inputs, template_drift


# generate() fills every field a GenerationConfig leaves unset from the model's own
# generation_config.json. Qwen2.5-VL-*-Instruct's sets repetition_penalty 1.05: inherited,
# it would reshape the scores before LogprobRecorder and RowSeededSampler see them, so a
# rollout would neither sample softmax(logits / T) (nor be greedy on the logits) nor record
# the log-probs the learner recomputes. Every field that changes the scores or the search
# when do_sample is False is therefore set here, to its neutral value. The sampling fields
# (Qwen's temperature 0.1, top_k 1, top_p 0.001) only act when do_sample is True, which it
# never is here; they get transformers' own defaults so that no warning names them.
NEUTRAL_DECODING: dict[str, Any] = dict(
    do_sample=False,
    num_beams=1,
    repetition_penalty=1.0,
    encoder_repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0,
    min_length=0,
    renormalize_logits=False,
    remove_invalid_values=False,
    temperature=1.0,
    top_p=1.0,
    top_k=50,
)


class LogprobRecorder(LogitsProcessor):
    """Records the log-probability of each token ``generate`` picks, under ``softmax(logits / T)``.

    It keeps only the previous step's log-softmax rows: the token chosen at step
    t is visible at step t + 1 as the last input id, and the final one is read
    from the returned sequences by :meth:`finish`.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature
        self.previous: Optional[torch.Tensor] = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, sequences: torch.LongTensor) -> torch.Tensor:
        """(batch, new_tokens) log-probs of the generated tokens."""
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, sequences[:, -1:]).squeeze(1))
            self.previous = None
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(sequences.shape[0], 0)


class SuppressTokens(LogitsProcessor):
    """Never generate the given ids.

    A reply must not contain the image placeholder or the vision start/end
    markers: a model that emits ``<|image_pad|>`` itself (an untrained model
    easily does) makes the next forward pass count more image tokens than
    there are image features, and the run fails. It runs after
    :class:`LogprobRecorder`, so recorded log-probs stay those of the model's
    own distribution, the one the training pass scores.
    """

    def __init__(self, token_ids: Sequence[int]) -> None:
        self.token_ids = torch.tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.token_ids.numel():
            scores = scores.clone()
            scores[:, self.token_ids.to(scores.device)] = float("-inf")
        return scores


def multimodal_token_ids(model: Any, processor: Any) -> list[int]:
    """The ids a reply must never contain: image/video placeholders and vision start/end markers."""
    config = getattr(model, "config", None)
    ids = [getattr(processor, "image_token_id", None), getattr(processor, "video_token_id", None)]
    ids += [getattr(config, name, None) for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")]
    return sorted({int(i) for i in ids if i is not None})


@dataclass
class RolloutTimes:
    """Seconds a rollout spent generating, in the environments, and turning messages into token ids."""

    generation: float = 0.0
    environment: float = 0.0
    tokenization: float = 0.0

    @contextlib.contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        """Add the seconds the ``with`` block takes to the field ``phase``."""
        started = time.perf_counter()
        yield
        setattr(self, phase, getattr(self, phase) + time.perf_counter() - started)


@dataclass
class RolloutResult:
    trajectories: list[Trajectory]
    times: RolloutTimes
    drift: list[int] = field(default_factory=list)  # per trajectory, when checked
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (index, sample id, reason) of unreadable samples left out


def context_length(model: Any) -> Optional[int]:
    """The most positions the model's language part takes (``max_position_embeddings``), or None if it does not say."""
    config = getattr(model, "config", None)
    for part in (getattr(config, "text_config", None), config):
        value = getattr(part, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class RolloutEngine:
    """Plays groups of episodes with a model.

    Args:
        model: a Qwen2.5-VL-family ``...ForConditionalGeneration`` (possibly wrapped by peft).
        processor: its processor (see :func:`mgpo_agents.qwen_processor.load_processor`).
        make_env: a zero-argument callable returning a fresh environment; the engine
            keeps a pool of them and reuses it across steps.
        max_new_tokens: the most tokens of one reply.
        temperature, top_p: sampling settings (ignored when ``greedy``).
        generation_batch_size: rows generated together (0: all unfinished episodes at once).
        seed: base seed; each rollout's sampling seed mixes in (step, question, rollout, turn).
        extra_logits_processors: ``f(trajectories, turn) -> [LogitsProcessor, ...]`` applied
            after sampling noise, e.g. for constrained decoding; they see the batch's rows in
            the order of ``trajectories``. Log-probs are always recorded from the raw logits.
        encode_images_once: hook the model's vision tower so a batch's copies of one image
            (a group's original) are encoded once (:mod:`mgpo_agents.shared_images`; exact),
            or take such hooks off (False). It is a setting of the model, not only of this
            engine: the hooks stay on it, so training passes through it profit too.
        max_episode_tokens: the most tokens an episode may hold (0: the model's context
            length). A turn is generated only while ``tokens so far + max_new_tokens`` fits;
            otherwise the episode ends as truncated (reward 0, ``info["overlong"]``): the
            prompt is never cut and the model never runs past its context.
        skip_bad_samples: a sample whose image cannot be read (``DataError`` at reset) is
            reported in :attr:`RolloutResult.skipped` instead of raising; its group plays
            ``stand_in(index)`` instead (so every process keeps its share of the batch),
            or is left out without ``stand_in`` (or when it returns None).
        stand_in: ``f(bad index) -> index`` of the sample that takes a bad one's place.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        make_env: Callable[[], gym.Env],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generation_batch_size: int = 0,
        seed: int = 0,
        extra_logits_processors: Optional[Callable[[Sequence[Trajectory], int], list[LogitsProcessor]]] = None,
        encode_images_once: bool = True,
        max_episode_tokens: int = 0,
        skip_bad_samples: bool = False,
        stand_in: Optional[Callable[[int], Optional[int]]] = None,
    ) -> None:
        encode_each_image_once(model, encode_images_once)
        self.max_episode_tokens = max_episode_tokens or context_length(model) or 0  # 0: no limit known
        self.skip_bad_samples = skip_bad_samples
        self.stand_in = stand_in
        self.extra_logits_processors = extra_logits_processors
        self.model = model
        self.processor = processor
        self.tokens = ConversationTokenizer(processor)
        self.make_env = make_env
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.generation_batch_size = generation_batch_size
        self.seed = seed
        self.envs: list[gym.Env] = []
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.tokens.end_of_turn_id
        stop = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        stop_ids = set(stop if isinstance(stop, list) else [stop] if stop is not None else [])
        stop_ids.add(self.tokens.end_of_turn_id)
        self.stop_ids = sorted(stop_ids)
        self.suppressed_ids = multimodal_token_ids(model, processor)

    def _env(self, slot: int) -> gym.Env:
        while len(self.envs) <= slot:
            self.envs.append(self.make_env())
        return self.envs[slot]

    @torch.no_grad()
    def run(
        self,
        sample_indices: Sequence[int],
        *,
        group_size: int,
        step: int = 0,
        group_ids: Optional[Sequence[int]] = None,
        greedy: bool = False,
        check_drift: bool = False,
        on_episode_end: Optional[Callable[[gym.Env, Trajectory], None]] = None,
    ) -> RolloutResult:
        """Play ``group_size`` episodes on each sample of ``sample_indices``.

        ``group_ids`` are the questions' slots within the whole step (across
        processes; default 0, 1, ...), so that sampling seeds do not depend on how a
        step's questions are split between processes.
        """
        slots = list(range(len(sample_indices))) if group_ids is None else [int(g) for g in group_ids]
        if len(slots) != len(sample_indices):
            raise ValueError(f"got {len(sample_indices)} questions but {len(slots)} group ids")
        times = RolloutTimes()
        trajectories, envs, skipped = self._start_episodes(slots, sample_indices, group_size, times)

        active = list(range(len(trajectories)))
        turn = 0
        while active:
            fitting = []
            for i in active:
                if self._fits(trajectories[i]):
                    fitting.append(i)
                else:
                    self._end_overlong(trajectories[i])
                    if on_episode_end is not None:
                        on_episode_end(envs[i], trajectories[i])
            active = fitting
            if not active:
                break
            replies = self._generate_in_batches([trajectories[i] for i in active], step, turn, greedy, times)
            still_active = []
            for i, reply in zip(active, replies):
                if self._play_reply(trajectories[i], envs[i], reply, times):
                    still_active.append(i)
                elif on_episode_end is not None:
                    on_episode_end(envs[i], trajectories[i])
            active = still_active
            turn += 1

        drift: list[int] = []
        if check_drift:
            with times.measure("tokenization"):
                for trajectory, env in zip(trajectories, envs):
                    drift.append(template_drift(trajectory, self.tokens.full_conversation_ids(env.unwrapped.chat_messages())))
        return RolloutResult(trajectories, times, drift, skipped)

    def _fits(self, trajectory: Trajectory) -> bool:
        """Whether the trajectory has room for one more reply of ``max_new_tokens`` within the episode limit."""
        return not self.max_episode_tokens or len(trajectory.input_ids) + self.max_new_tokens <= self.max_episode_tokens

    def _end_overlong(self, trajectory: Trajectory) -> None:
        """End an episode whose next reply might not fit: truncated, reward 0, flagged in its info."""
        trajectory.reward = 0.0
        trajectory.info = {**trajectory.info, "truncated": True, "overlong": True, "episode_tokens": len(trajectory.input_ids),
                           "max_episode_tokens": self.max_episode_tokens}

    def _start_episodes(
        self, slots: Sequence[int], sample_indices: Sequence[int], group_size: int, times: RolloutTimes
    ) -> tuple[list[Trajectory], list[gym.Env], list[tuple[int, str, str]]]:
        """Reset ``group_size`` environments on each sample; each trajectory starts with its group's prompt.

        With ``skip_bad_samples``, a sample whose image cannot be read is returned, and its group
        plays the stand-in sample (or is left out).
        """
        trajectories: list[Trajectory] = []
        envs: list[gym.Env] = []
        skipped: list[tuple[int, str, str]] = []
        for slot, index in zip(slots, sample_indices):
            with times.measure("environment"):
                first = self._reset_first(len(envs), int(index), skipped)
            if first is None:
                continue
            index, first_info = first
            prompt = None
            for rollout in range(group_size):
                with times.measure("environment"):
                    env = self._env(len(envs))
                    # The first reset decoded and cached the image; the others render from the cache.
                    info = first_info if rollout == 0 else env.reset(options={"index": index})[1]
                envs.append(env)
                if prompt is None:  # one rendering serves the whole group: the prompt is the same
                    with times.measure("tokenization"):
                        prompt = self.tokens.prompt(env.unwrapped.chat_messages())
                trajectory = Trajectory(group=slot, rollout=rollout, sample_index=index, info=dict(info))
                trajectory.segments.append(Segment(prompt["input_ids"][0].tolist(), generated=False))
                trajectory.add_images(prompt.get("pixel_values"), prompt.get("image_grid_thw"))
                trajectories.append(trajectory)
        return trajectories, envs, skipped

    def _reset_first(self, slot: int, index: int, skipped: list[tuple[int, str, str]]) -> Optional[tuple[int, dict]]:
        """Reset the group's first environment (``slot``) on ``index``: ``(index played, info)``.

        With ``skip_bad_samples``, a sample whose image cannot be read goes to ``skipped`` and the
        first readable stand-in plays instead (None: none left); the environment whose reset raised
        is replaced, since Gymnasium's checker wrappers are left inconsistent by it.
        """
        tried: set[int] = set()
        while True:
            env = self._env(slot)
            try:
                return index, env.reset(options={"index": index})[1]
            except DataError as error:
                if not self.skip_bad_samples:
                    raise
                skipped.append((index, env.unwrapped.dataset[index].sample_id, str(error)))
                env.close()
                self.envs[slot] = self.make_env()
                tried.add(index)
                following = self.stand_in(index) if self.stand_in is not None else None
                if following is None or following in tried:
                    return None
                index = following

    def _generate_in_batches(
        self, trajectories: Sequence[Trajectory], step: int, turn: int, greedy: bool, times: RolloutTimes
    ) -> list[tuple[list[int], list[float]]]:
        """One reply per trajectory, ``generation_batch_size`` rows at a time (0: all at once)."""
        batch_size = self.generation_batch_size or len(trajectories)
        replies: list[tuple[list[int], list[float]]] = []
        for start in range(0, len(trajectories), batch_size):
            with times.measure("generation"):
                replies += self._generate(trajectories[start : start + batch_size], step, turn, greedy)
        return replies

    def _play_reply(self, trajectory: Trajectory, env: gym.Env, reply: tuple[list[int], list[float]], times: RolloutTimes) -> bool:
        """Append a reply to its trajectory and hand it to its environment; True while the episode goes on.

        A finished episode gets its reward and info; otherwise the environment's next message
        is appended as ids (with its images), ready for the next turn.
        """
        ids, logprobs = reply
        ended_properly = bool(ids) and ids[-1] in self.stop_ids
        trajectory.truncated_replies += int(not ended_properly)
        trajectory.segments.append(Segment(ids, generated=True, logprobs=logprobs))
        text = self.processor.tokenizer.decode(ids, skip_special_tokens=True)
        trajectory.replies.append(text)
        with times.measure("environment"):
            before = len(env.unwrapped.chat_messages())
            _, reward, terminated, truncated, info = env.step(text)
        trajectory.info = dict(info)
        if terminated or truncated:
            trajectory.reward = float(reward)
            return False
        with times.measure("tokenization"):
            segment = self.tokens.environment_segment(env.unwrapped.chat_messages(), before + 1)
        env_ids = segment["input_ids"][0].tolist()
        if not ended_properly:
            # The reply was cut at max_new_tokens: close the turn the way the template
            # would, with an end-of-turn token the model did not generate (mask 0).
            env_ids = [self.tokens.end_of_turn_id] + env_ids
        trajectory.segments.append(Segment(env_ids, generated=False))
        trajectory.add_images(segment.get("pixel_values"), segment.get("image_grid_thw"))
        return True

    def _generate(self, trajectories: Sequence[Trajectory], step: int, turn: int, greedy: bool) -> list[tuple[list[int], list[float]]]:
        """One reply for each trajectory: (ids up to and including the stop token, their log-probs)."""
        parameter = next(self.model.parameters())
        inputs = model_inputs(trajectories, self.pad_id, self.tokens.image_token_id, left_pad=True, device=parameter.device, dtype=parameter.dtype)
        width = inputs["input_ids"].shape[1]
        temperature = 1.0 if greedy else self.temperature
        recorder = LogprobRecorder(temperature)
        processors = LogitsProcessorList([recorder, SuppressTokens(self.suppressed_ids)])
        if not greedy:
            seeds = [row_seed(self.seed, step, t.group, t.rollout, turn) for t in trajectories]
            processors.append(RowSeededSampler(seeds, self.temperature, self.top_p))
        if self.extra_logits_processors is not None:
            processors.extend(self.extra_logits_processors(trajectories, turn))
        config = GenerationConfig(
            **NEUTRAL_DECODING,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
        )
        # Never in lock step with other processes (transformers' default for FSDP models): the trainer
        # gathers sharded weights before rollouts, and each process plays its own number of turns and batches.
        output = self.model.generate(**inputs, generation_config=config, logits_processor=processors, synced_gpus=False)
        new = output.sequences[:, width:].cpu()
        logprobs = recorder.finish(output.sequences).cpu()
        results = []
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            end = next((k + 1 for k, token in enumerate(ids) if token in self.stop_ids), len(ids))
            results.append((ids[:end], logprobs[row, :end].tolist()))
        return results
