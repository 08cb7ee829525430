"""The episode store: exact round trips, images stored once, appends that survive crashes."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import mgpo_env  # noqa: F401  (registers the environment)
import mgpo_tools.episode_record
import mgpo_tools.episode_store
import mgpo_tools.recording
from mgpo_tools.episode_record import image_hash
from mgpo_tools.episode_store import EPISODES_FILE, EpisodeStore, StoreWarning
from mgpo_tools.recording import RecordEpisodes, play_episodes, record_from_env
from mgpo_tools.scripted_policies import OracleBoxPolicy, RandomPolicy

TASK = {"num_samples": 6, "canvas_size": 1024}
SMALL_BUDGET = {"max_pixels": 256 * 28 * 28, "min_pixels": 64 * 28 * 28}  # small views: fast PNG encoding


def make_env(**kwargs):
    return gym.make("mgpo/HighResVQA-v0", dataset_kwargs=TASK, **SMALL_BUDGET, **kwargs)


def play(env, replies, seed=0):
    """Reset and play ``replies`` (stopping early if the episode ends); return the last info."""
    return play_with_obs(env, replies, seed)[1]


def play_with_obs(env, replies, seed=0):
    obs, info = env.reset(seed=seed)
    for reply in replies:
        obs, _, terminated, _, info = env.step(reply)
        if terminated:
            break
    return obs, info


def pixels(image) -> np.ndarray:
    return np.asarray(image)


@pytest.fixture
def store(tmp_path):
    return EpisodeStore(tmp_path / "episodes", fsync=False)


# Every kind of episode the env makes: a valid crop, an invalid box (the original is
# shown again), free mode with two crops, no box at all, single turn, still running.
EPISODES = [
    ("two_turn", ["[10, 10, 300, 200]", "\\boxed{A}"]),
    ("two_turn", ["[5, 5, 9, 9]", "\\boxed{B}"]),  # too small: invalid
    ("two_turn", ["no box, sorry", "the answer is \\boxed{C}"]),
    ("free", ['{"bbox_2d": [0, 0, 120, 90]}', "[100, 100, 400, 300]", "\\boxed{D}"]),
    ("free", ["[1, 1, 3, 3]", "\\boxed{A}"]),  # invalid box in free mode: no image follows
    ("single_turn", ["\\boxed{A}"]),
    ("two_turn", ["[10, 10, 300, 200]"]),  # still running
]


@pytest.mark.parametrize("protocol,replies", EPISODES)
def test_round_trip_is_exact(store, protocol, replies):
    env = make_env(protocol=protocol)
    obs, info = play_with_obs(env, replies, seed=3)
    base = env.unwrapped
    record = record_from_env(env, step=7, split="train", extra={"checkpoint": "c1", "pair": (1, 2)})
    seen = [pixels(im).copy() for im in base.chat_images()]

    # What the env says, the record says.
    assert record.sample_id == base.sample.sample_id and record.question == base.sample.question
    assert record.choices == base.sample.choices and record.answer == base.sample.answer
    assert record.transcript() == base.transcript()
    assert [m.text() for m in record.messages] == [h["content"] for h in obs["history"]]
    assert [(g.turn, g.view_box, g.crop_box, g.valid, g.error) for g in record.groundings] == [
        (g.turn, g.view_box, g.crop_box, g.valid, g.error) for g in base.groundings
    ]
    assert [(o.box, o.color, o.label) for o in record.overlays] == [(o.box, o.color, o.label) for o in base.box_overlays()]
    assert record.original_size == info["original_image_size"]
    assert record.generations == tuple(r for r in replies[: len(record.generations)])
    if record.done:
        assert record.correct == info["correct"] and record.parsed_answer == info["answer"]
        assert record.reward == (1.0 if info["correct"] else 0.0)
    else:
        assert record.correct is None and record.parsed_answer is None and record.reward == 0.0
    assert record.extra == {"checkpoint": "c1", "pair": [1, 2]}  # normalised through JSON at once

    assert store.add(record)
    (loaded,) = store.load()
    assert loaded == record  # every field but the in-memory pixels
    assert loaded.to_dict() == json.loads(json.dumps(record.to_dict()))
    # The images come back pixel for pixel, in conversation order.
    assert len(loaded.images) == len(seen)
    for entry, expected in zip(loaded.images, seen):
        assert np.array_equal(pixels(store.open_image(entry)), expected)
        assert image_hash(store.open_image(entry)) == entry.sha256
    thumbnail = store.open_image(loaded.original)
    assert max(thumbnail.size) <= 1024 and loaded.original.kind == "thumbnail"


def test_image_kinds_follow_the_protocol(store):
    env = make_env(protocol="two_turn")
    play(env, ["[5, 5, 9, 9]", "\\boxed{B}"])
    invalid = record_from_env(env)
    assert [i.kind for i in invalid.images] == ["original", "original"]  # shown again after an invalid box
    assert invalid.images[0].sha256 == invalid.images[1].sha256
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"])
    valid = record_from_env(env)
    assert [i.kind for i in valid.images] == ["original", "crop"]
    assert valid.images[1].region == tuple(float(v) for v in valid.groundings[0].crop_box)
    assert valid.crops == [valid.images[1]] and valid.box_valid is True and invalid.box_valid is False


def test_identical_images_are_stored_once(store):
    env = make_env()
    for _ in range(3):  # one sample, one box: a GRPO group answering alike
        play(env, ["[10, 10, 300, 200]", "\\boxed{A}"], seed=1)
        assert store.add(record_from_env(env))
    records = store.load()
    hashes = {i.sha256 for r in records for i in (r.original, *r.images)}
    assert len(hashes) == 3  # thumbnail, view, crop
    files = sorted(store.images_dir.rglob("*.png"))
    assert len(files) == 3 and {f.stem for f in files} == hashes
    assert all(f.parent.name == f.stem[:2] for f in files)
    assert store.images_written == 3 and store.images_reused == 6
    # Another crop of the same sample adds only that crop.
    play(env, ["[50, 60, 250, 260]", "\\boxed{A}"], seed=1)
    store.add(record_from_env(env))
    assert len(list(store.images_dir.rglob("*.png"))) == 4


def test_append_after_reopen_keeps_order(tmp_path):
    env = make_env()
    first = EpisodeStore(tmp_path / "s", fsync=False)
    ids = []
    for seed in (0, 1):
        play(env, ["[10, 10, 300, 200]", "\\boxed{A}"], seed=seed)
        record = record_from_env(env)
        first.add(record)
        ids.append(record.episode_id)
    again = EpisodeStore(tmp_path / "s")  # a new process, say; fsync on
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"], seed=2)
    record = record_from_env(env)
    again.add(record)
    ids.append(record.episode_id)
    assert [r.episode_id for r in EpisodeStore(tmp_path / "s").load()] == ids
    assert json.loads((tmp_path / "s" / "store.json").read_text())["format"] == "mgpo-episodes"


def test_torn_last_line_is_skipped_with_a_warning_and_appending_still_works(store):
    env = make_env()
    for seed in (0, 1):
        play(env, ["[10, 10, 300, 200]", "\\boxed{A}"], seed=seed)
        store.add(record_from_env(env))
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"], seed=2)
    torn = json.dumps(record_from_env(env).to_dict())
    with open(store.episodes_path, "a") as f:  # the crash: half a line, no newline
        f.write(torn[: len(torn) // 2])

    with pytest.warns(StoreWarning, match=r"episodes.jsonl:3: .*torn by a crash"):
        assert len(store.load()) == 2

    reopened = EpisodeStore(store.root, fsync=False)
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"], seed=3)
    last = record_from_env(env)
    reopened.add(last)
    with pytest.warns(StoreWarning, match=r"episodes.jsonl:3: "):
        records = reopened.load()
    assert len(records) == 3 and records[-1] == last  # not glued to the torn line
    assert store.episodes_path.read_bytes().endswith(b"\n")


def test_blank_lines_and_a_missing_store_read_as_nothing(tmp_path):
    assert EpisodeStore(tmp_path / "nothing").load() == []
    store = EpisodeStore(tmp_path / "s", fsync=False)
    env = make_env()
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"])
    store.add(record_from_env(env))
    with open(store.episodes_path, "a") as f:
        f.write("\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(store.load()) == 1 and len(store) == 1


def test_every_n_steps_and_max_per_step_sample_training_rollouts(tmp_path):
    store = EpisodeStore(tmp_path / "s", every_n_steps=5, max_per_step=2, fsync=False)
    env = make_env()
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"])
    kept = []
    for step in range(11):
        for _ in range(3):  # a group of 3 rollouts per step
            if store.wants("train", step):
                kept.append((step, store.add(record_from_env(env, split="train", step=step))))
    assert kept == [(0, True), (0, True), (5, True), (5, True), (10, True), (10, True)]
    assert store.add(record_from_env(env, split="train", step=3)) is False  # add() applies the rule too
    assert store.add(record_from_env(env, split="eval", step=3)) is True  # other splits: always kept
    assert [(r.split, r.step) for r in store.load()] == [("train", s) for s in (0, 0, 5, 5, 10, 10)] + [("eval", 3)]
    with pytest.raises(ValueError):
        EpisodeStore(tmp_path / "x", every_n_steps=0)


def test_recorder_saves_every_episode_of_an_evaluation_loop(store):
    env = make_env(protocol="two_turn")
    records = play_episodes(env, OracleBoxPolicy(seed=0), store, episodes=4, seed=10, step=100, extra={"policy": "oracle"})
    loaded = store.load()
    assert len(records) == len(loaded) == 4 and loaded == records
    assert all(r.done and r.split == "eval" and r.step == 100 and r.extra == {"policy": "oracle"} for r in loaded)
    assert all(r.box_valid for r in loaded)

    # As a plain wrapper in a hand-written loop, with per-episode extra from info.
    wrapped = RecordEpisodes(make_env(), store, split="eval", extra=lambda info: {"tokens": info["visual_tokens_total"]})
    policy = RandomPolicy(seed=0)
    obs, info = wrapped.reset(seed=0)
    done = False
    while not done:
        obs, reward, done, _, info = wrapped.step(policy(obs, info))
    assert store.load()[-1].extra == {"tokens": info["visual_tokens_total"]}
    assert store.load()[-1].reward == reward


def test_record_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="before reset"):
        record_from_env(make_env())


def test_add_refuses_a_record_whose_pixels_are_gone(store):
    env = make_env()
    play(env, ["[10, 10, 300, 200]", "\\boxed{A}"])
    record = record_from_env(env)
    record.pixels = {}
    with pytest.raises(ValueError, match="neither in the record"):
        store.add(record)
    assert not (store.root / EPISODES_FILE).exists() or store.load() == []
    assert not [p for p in store.root.rglob("*.tmp")]  # no temporary files left behind
    assert os.path.isdir(store.root)


def test_store_docstring_describes_the_layout():
    doc = mgpo_tools.episode_store.__doc__
    for name in ("episodes.jsonl", "images/", "store.json", "sha256", "thumbnail", "fsync"):
        assert name.lower() in doc.lower()


def test_paths_are_sharded_by_hash_prefix(tmp_path):
    store = EpisodeStore(tmp_path)
    path = store.image_path("ab" + "0" * 62)
    assert path == Path(tmp_path) / "images" / "ab" / ("ab" + "0" * 62 + ".png")
