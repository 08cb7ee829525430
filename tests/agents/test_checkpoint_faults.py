"""Storage faults: a checkpoint write that fails keeps the previous one, and a torn metrics line loses no step."""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.faults import CheckpointWriteError  # noqa: E402
from mgpo_agents.trainer import MGPOTrainer, latest_checkpoint  # noqa: E402
from mgpo_tools.metrics import read_metrics  # noqa: E402


def _disk_full_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """Let ``torch.save`` write ``writes`` files, then fail as a full disk does (a half-written file left behind)."""
    real_save = torch.save
    count = {"n": 0}

    def save(obj, f, *args, **kwargs):
        count["n"] += 1
        if count["n"] > writes:
            Path(f).write_bytes(b"\0" * 100)  # what a full disk leaves: a torn file
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("writes", [0, 1], ids=["optimizer-write-fails", "rng-write-fails"])
def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint_loadable(tiny_training_config, monkeypatch, writes):
    config = tiny_training_config(steps=2, save_every=1, keep_checkpoints=1)  # keep 1: the only good one must survive
    trainer = MGPOTrainer(config)
    trainer.train(steps=1, progress=False)
    root = Path(config.output_dir) / "checkpoints"
    weights_at_1 = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    _disk_full_after(monkeypatch, writes)
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*step-000002 .*No space left on device.*step-000001, is intact"):
        trainer.train(steps=2, progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == ["step-000001"]  # no partial folder, the old one kept
    assert latest_checkpoint(Path(config.output_dir)).name == "step-000001"
    fresh = MGPOTrainer(config)
    fresh.load_checkpoint()
    assert fresh.step == 1
    for name, p in fresh.model.named_parameters():
        assert torch.equal(p, weights_at_1[name])


def test_old_checkpoints_are_deleted_only_after_the_new_one_is_complete(tiny_training_config, monkeypatch):
    config = tiny_training_config(steps=3, save_every=1, keep_checkpoints=2)
    trainer = MGPOTrainer(config)
    root = Path(config.output_dir) / "checkpoints"
    seen: list[list[str]] = []
    import mgpo_agents.trainer as trainer_module

    real_replace = trainer_module._replace_folder

    def replace(source, target):  # what is on disk the moment the new checkpoint becomes visible
        seen.append(sorted(p.name for p in root.iterdir() if p.name.startswith("step-")))
        real_replace(source, target)

    monkeypatch.setattr(trainer_module, "_replace_folder", replace)
    trainer.train(progress=False)
    assert seen == [[], ["step-000001"], ["step-000001", "step-000002"]]  # step 1 still there while step 3 is written
    assert sorted(p.name for p in root.iterdir()) == ["step-000002", "step-000003"]


def test_saving_the_same_step_again_replaces_it_without_a_gap(tiny_training_config):
    trainer = MGPOTrainer(tiny_training_config(steps=1))
    trainer.train(progress=False)
    again = trainer.save_checkpoint()
    assert again.name == "step-000001" and (again / "trainer_state.json").exists()
    assert sorted(p.name for p in again.parent.iterdir()) == ["step-000001"]


def test_a_torn_metrics_line_loses_no_step_on_resume(tmp_path, tiny_training_config):
    config = tiny_training_config(steps=2, save_every=2)
    MGPOTrainer(config).train(progress=False)
    metrics = Path(config.output_dir) / "metrics.jsonl"
    rows = read_metrics(metrics)
    # A crash during step 3's write: half a line, no newline (a step 3 the checkpoint does not hold).
    with open(metrics, "a") as f:
        f.write(json.dumps({**rows[-1], "step": 3})[:25])
    resumed = MGPOTrainer(tiny_training_config(steps=4, save_every=2))
    resumed.load_checkpoint()
    resumed.train(progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reader sees no torn or corrupt line at all
        steps = [row["step"] for row in read_metrics(metrics)]
    assert steps == [1, 2, 3, 4]
    assert read_metrics(metrics)[:2] == rows  # the rows before the crash are untouched
