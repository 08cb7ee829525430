"""`mgpo train` / `mgpo eval` end to end on the tiny model, and LoRA training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from mgpo_agents.cli import main  # noqa: E402


@pytest.mark.slow
def test_train_then_resume_then_eval_from_the_command_line(tmp_path, tiny_training_config, capsys):
    config = tiny_training_config(group_size=2, max_new_tokens=4)  # the command line starts from it as from a preset
    config_file = tmp_path / "tiny.json"
    config.save(config_file)
    out = Path(config.output_dir)
    train = ["train", "--config", str(config_file), "--output", str(out), "--no-progress"]
    assert main([*train, "--steps", "1", "--save-rollouts-every", "1"]) == 0
    # The stored rollouts and the metrics make a report.
    from mgpo_tools.episode_store import EpisodeStore

    assert len(list(EpisodeStore(out / "episodes").iter_records())) == 2  # 1 question x 2 rollouts
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and len(html) > 10_000
    assert (out / "checkpoints" / "step-000001" / "model.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["steps"] == 1
    # A second run into the same folder must be explicit about resuming.
    assert main([*train, "--steps", "2"]) == 2
    assert main([*train, "--steps", "2", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert (out / "curves.png").exists()

    eval_dir = tmp_path / "eval"
    code = main([
        "eval", "--model", str(out / "checkpoints" / "step-000002"), "--dataset", "synthetic",
        "--dataset-kwargs", json.dumps({**config.dataset_kwargs, "num_samples": 4}),
        "--min-pixels", str(config.min_pixels), "--max-pixels", str(config.max_pixels), "--max-new-tokens", str(config.max_new_tokens),
        "--output", str(eval_dir),
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
def test_lora_trains_only_the_adapters(tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    config = tiny_training_config(learning_rate=1e-2, lora_rank=4, lora_alpha=8, protocol="single_turn")
    trainer = MGPOTrainer(config)
    assert trainer.reference is None  # the reference is the base model with adapters off
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train(progress=False)
    changed = {k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert (Path(config.output_dir) / "checkpoints" / "step-000002" / "adapter_model.safetensors").exists()
