"""``mgpo report``: one self-contained HTML file whose pictures come from ``draw_boxes``."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import mgpo_env  # noqa: F401  (registers the environment)
from mgpo_agents.cli import main as cli_main
from mgpo_tools.episode_store import EpisodeStore
from mgpo_env.rendering import PREDICTED_COLOR
from mgpo_tools.recording import record_from_env
from mgpo_tools.report import ReportOptions, annotated_original, build_report, metric_series
from mgpo_tools.scripted_policies import OracleBoxPolicy, RandomPolicy

TASK = {"num_samples": 20, "canvas_size": 1024}
# The run's metrics.jsonl ends in a torn line on purpose (the `run` fixture checks the warning).
pytestmark = pytest.mark.filterwarnings("ignore:.*unreadable metrics line:UserWarning")


def make_run(run_dir: Path, episodes: int = 12) -> dict:
    """A run folder: scripted episodes in ``episodes/`` (with ``env.render()`` of each) and a metrics file.

    Half the episodes box the target (oracle), half box at random; every fifth
    writes a box too small to be valid, so every filter has something to show.
    """
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs=TASK, render_mode="rgb_array")
    store = EpisodeStore(run_dir / "episodes", fsync=False)
    policies = {"oracle": OracleBoxPolicy(seed=0), "random": RandomPolicy(seed=0)}
    renders, records = {}, []
    for k in range(episodes):
        name = "oracle" if k % 2 == 0 else "random"
        obs, info = env.reset(seed=k)
        done = False
        while not done:
            action = "[3, 3, 9, 9]" if (k % 5 == 4 and obs["turn"] == 0) else policies[name](obs, info)
            obs, _, done, _, info = env.step(action)
        record = record_from_env(env, split="eval" if k < episodes - 4 else "train", step=None if k < episodes - 4 else 10, info=info)
        store.add(record)
        renders[record.episode_id] = env.render()
        records.append(record)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(30):
            f.write(json.dumps({"step": step, "reward_mean": step / 30, "accuracy": 0.25 + step / 100, "valid_box_rate": 0.9, "kl": 0.01 * step, "note": "text is ignored"}) + "\n")
        f.write('{"step": 30, "reward_me')  # a torn last line
    env.close()
    return {"records": records, "renders": renders}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    made = make_run(run_dir)
    with pytest.warns(UserWarning, match="metrics line"):
        assert cli_main(["report", str(run_dir), "--page-size", "5"]) == 0
    return {"dir": run_dir, "html": (run_dir / "report.html").read_text(encoding="utf-8"), **made}


def page_data(text: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.DOTALL)
    assert match, "the report lost its data block"
    return json.loads(match.group(1))


def decode(uri: str) -> tuple[str, Image.Image]:
    header, payload = uri.split(",", 1)
    mime = header[len("data:") : header.index(";")]
    return mime, Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def test_report_is_one_self_contained_file(run):
    text = run["html"]
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # Nothing is fetched: no external src/href/url(), and no http(s) address at all.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.IGNORECASE)
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"url\(\s*['\"]?(?!data:)", text)
    for attribute in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text):
        assert attribute.startswith("data:"), attribute
    assert not list(run["dir"].glob("*.png"))  # no side files next to it
    # The style and script files (package data) are inlined and every marker is filled.
    assert "<style>\n:root {" in text and '<script>\n"use strict";' in text
    assert not re.search(r"__(STYLE|SCRIPT|TITLE|SOURCE|GENERATED|NOTE|SUMMARY|CHARTS|DATA)__", text)


def test_report_holds_every_episode_and_the_curves(run):
    data = page_data(run["html"])
    records = run["records"]
    assert data["pageSize"] == 5
    assert [e["id"] for e in data["episodes"]] == [r.episode_id for r in records]
    for episode, record in zip(data["episodes"], records):
        assert episode["correct"] == record.correct and episode["reward"] == record.reward
        assert episode["box"] == ("valid" if record.box_valid else "invalid")
        assert len(episode["crops"]) == len(record.crops)
        assert data["strings"][episode["question"]] == record.question
        assert all(key in data["images"] for key in [episode["orig"]] + [c["img"] for c in episode["crops"]])
    assert {e["box"] for e in data["episodes"]} == {"valid", "invalid"}
    assert {e["split"] for e in data["episodes"]} == {"eval", "train"}
    # The system prompt is stored once, not once per episode.
    assert sum(s.startswith("You answer questions") for s in data["strings"]) == 1
    # One chart per numeric metric; the text field and the torn line are ignored.
    text = run["html"]
    assert [alt for alt in re.findall(r"<figure class='chart'><img alt='([^']+)'", text)] == ["reward_mean", "accuracy", "valid_box_rate", "kl"]
    assert "<td>eval</td><td>all</td><td>8</td>" in text


def test_gallery_pictures_are_env_render(run, tmp_path):
    """At the env's render size and in PNG, each gallery picture *is* ``env.render()``."""
    output = tmp_path / "exact.html"
    # The last 5 episodes (PNG at full size is slow to encode): oracle and random boxes, an invalid one, train and eval.
    build_report(run["dir"], output, ReportOptions(max_side=1024, image_format="png", crop_max_side=2048, max_episodes=5))
    data = page_data(output.read_text(encoding="utf-8"))
    store = EpisodeStore(run["dir"] / "episodes")
    assert len(data["episodes"]) == 5
    for episode, record in zip(data["episodes"], store.load()[-5:]):
        mime, picture = decode(data["images"][episode["orig"]])
        expected = run["renders"][episode["id"]]
        assert mime == "image/png"
        assert np.array_equal(np.asarray(picture), expected), f"episode {episode['id']} differs from env.render()"
        assert np.array_equal(np.asarray(annotated_original(store, record)), expected)
        # Crops at full size are the exact images the model saw.
        for crop, entry in zip(episode["crops"], record.crops):
            assert np.array_equal(np.asarray(decode(data["images"][crop["img"]])[1]), np.asarray(store.open_image(entry)))


def test_default_gallery_pictures_show_the_same_boxes_smaller(run):
    data = page_data(run["html"])
    for episode in data["episodes"]:
        _, picture = decode(data["images"][episode["orig"]])
        assert max(picture.size) == 512
        expected = Image.fromarray(run["renders"][episode["id"]]).resize(picture.size, Image.Resampling.BOX)
        difference = np.abs(np.asarray(picture, dtype=np.int16) - np.asarray(expected, dtype=np.int16))
        assert difference.mean() < 4.0
        if episode["box"] == "valid":  # the predicted box is drawn in its colour
            close = np.all(np.abs(np.asarray(picture, dtype=np.int16) - np.array(PREDICTED_COLOR)) < 40, axis=-1)
            assert close.sum() > 50


def test_model_text_cannot_inject_markup(tmp_path):
    env = gym.make("mgpo/HighResVQA-v0", dataset_kwargs={"num_samples": 2, "canvas_size": 512})
    env.reset(seed=0)
    env.step("</script><script>alert(1)</script> __DATA__ [0, 0, 100, 100]")
    env.step("<img src=x onerror=alert(2)> \\boxed{A}")
    EpisodeStore(tmp_path / "episodes", fsync=False).add(record_from_env(env))
    build_report(tmp_path, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<img src=x" not in text
    assert text.count("__DATA__ [0") == 1  # a template marker in the data stays text
    replies = [p for e in page_data(text)["episodes"] for m in e["messages"] if m["role"] == "assistant" for p in m["parts"]]
    assert any("alert(1)" in page_data(text)["strings"][p] for p in replies)
    assert "textContent" in text and ".innerHTML" not in text


def test_a_run_without_episodes_or_metrics_still_reports(tmp_path):
    stats = build_report(tmp_path, tmp_path / "empty.html")
    text = (tmp_path / "empty.html").read_text(encoding="utf-8")
    assert stats.episodes == 0 and stats.charts == 0
    assert "No episodes stored" in text and "No <code>metrics.jsonl</code>" in text
    assert page_data(text)["episodes"] == []


def test_max_episodes_keeps_the_last_ones(run, tmp_path):
    stats = build_report(run["dir"], tmp_path / "r.html", ReportOptions(max_episodes=5))
    data = page_data((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert stats.episodes == 5 and stats.episodes_in_store == 12
    assert [e["id"] for e in data["episodes"]] == [r.episode_id for r in run["records"][-5:]]


def test_metric_series_uses_step_and_skips_non_numbers():
    x, series = metric_series([{"step": 2, "a": 1, "b": True, "c": float("nan")}, {"step": 4, "a": 3, "d": 0.5}])
    assert x == "step" and series == {"a": ([2.0, 4.0], [1.0, 3.0]), "d": ([4.0], [0.5])}


def test_a_resumed_run_plots_the_later_lines():
    rows = [{"step": s, "loss": 1.0} for s in (1, 2, 3)] + [{"step": s, "loss": 2.0} for s in (2, 3, 4)]
    assert metric_series(rows)[1] == {"loss": ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 2.0, 2.0])}


def test_the_summary_keeps_evaluations_at_different_steps_apart(run):
    import dataclasses

    from mgpo_tools.report import summarise

    records = run["records"]
    evaluated = [r for r in records if r.split == "eval"]
    before, after = evaluated[:4], evaluated[4:]
    rows = summarise([dataclasses.replace(r, step=0) for r in before] + [dataclasses.replace(r, step=40) for r in after]
                     + [r for r in records if r.split == "train"])
    overall = {row["split"]: row for row in rows if row["category"] == "all"}
    assert list(overall) == ["eval, step 0", "eval, step 40", "train"]
    assert overall["eval, step 0"]["episodes"] == 4 and overall["eval, step 40"]["episodes"] == len(after)
    assert overall["eval, step 0"]["accuracy"] == sum(bool(r.correct) for r in before) / 4
    assert overall["eval, step 40"]["accuracy"] == sum(bool(r.correct) for r in after) / len(after)
    # One evaluation step (or none recorded) keeps the plain split name.
    assert {row["split"] for row in summarise(evaluated)} == {"eval"}
