"""`mgpo train` / `mgpo eval` end to end on the tiny model, and LoRA training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mgpo_agents.cli import main  # noqa: E402

FAST = [
    "--dataset-kwargs", '{"num_samples": 8, "canvas_size": 1024, "target_size": 64, "clutter": 10}',
    "--min-pixels", str(16 * 28 * 28), "--max-pixels", str(36 * 28 * 28),
    "--group-size", "2", "--prompts-per-step", "1", "--mini-batch-prompts", "1",
    "--max-new-tokens", "4", "--tensorboard", "false", "--eval-dataset", "",
]


@pytest.mark.slow
def test_train_then_resume_then_eval_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny-cpu", "--steps", "1", "--output", str(out), "--no-progress", "--save-rollouts-every", "1", *FAST]) == 0
    # The stored rollouts and the metrics make a report.
    from mgpo_tools.episode_store import EpisodeStore

    assert len(list(EpisodeStore(out / "episodes").iter_records())) == 2  # 1 question x 2 rollouts
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and len(html) > 10_000
    assert (out / "checkpoints" / "step-000001" / "model.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["steps"] == 1
    # A second run into the same folder must be explicit about resuming.
    assert main(["train", "--preset", "tiny-cpu", "--steps", "2", "--output", str(out), "--no-progress", *FAST]) == 2
    assert main(["train", "--preset", "tiny-cpu", "--steps", "2", "--output", str(out), "--no-progress", "--resume", *FAST]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert (out / "curves.png").exists()

    eval_dir = tmp_path / "eval"
    code = main([
        "eval", "--model", str(out / "checkpoints" / "step-000002"), "--dataset", "synthetic",
        "--dataset-kwargs", '{"num_samples": 4, "canvas_size": 1024, "target_size": 64, "clutter": 10}',
        "--min-pixels", str(16 * 28 * 28), "--max-pixels", str(36 * 28 * 28), "--max-new-tokens", "4", "--output", str(eval_dir),
    ])
    assert code == 0
    rows = [json.loads(line) for line in (eval_dir / "results.jsonl").read_text().splitlines()]
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert len(rows) == 4 and summary["episodes"] == 4
    assert summary["accuracy"] == sum(r["correct"] for r in rows) / 4
    assert set(summary["accuracy_per_category"]) == {r["category"] for r in rows}
    assert summary["annotated_episodes"] == 4 and 0.0 <= summary["hit_rate"] <= 1.0


def test_train_rejects_a_bad_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--group-size", "many"])
    assert "invalid int value" in capsys.readouterr().err


@pytest.mark.slow
def test_lora_trains_only_the_adapters(tmp_path):
    from mgpo_agents.config import MGPOConfig
    from mgpo_agents.trainer import MGPOTrainer

    config = MGPOConfig(
        model="builtin:tiny", dataset_kwargs={"num_samples": 8, "canvas_size": 1024, "target_size": 64, "clutter": 10},
        min_pixels=16 * 28 * 28, max_pixels=36 * 28 * 28, group_size=4, prompts_per_step=1, mini_batch_prompts=1,
        max_new_tokens=6, learning_rate=1e-2, steps=2, save_every=1, tensorboard=False, output_dir=str(tmp_path / "lora"),
        lora_rank=4, lora_alpha=8, protocol="single_turn",
    )
    trainer = MGPOTrainer(config)
    assert trainer.reference is None  # the reference is the base model with adapters off
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train(progress=False)
    changed = {k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert (tmp_path / "lora" / "checkpoints" / "step-000002" / "adapter_model.safetensors").exists()
