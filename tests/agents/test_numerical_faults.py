"""Non-finite losses and gradients: the update is skipped, counted and said; too many in a row stop the run."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.faults import NonFiniteUpdates  # noqa: E402
from mgpo_agents.trainer import MGPOTrainer, latest_checkpoint  # noqa: E402


def _weights(trainer: MGPOTrainer) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


def _poison_loss(trainer: MGPOTrainer, monkeypatch: pytest.MonkeyPatch, steps: set[int]) -> None:
    """Make the loss NaN on the given (0-based) steps: the loss term and so every gradient."""
    original = trainer._micro_batch_loss

    def poisoned(*args, **kwargs):
        terms = original(*args, **kwargs)
        if trainer.step in steps:
            terms.loss = terms.loss * float("nan")
        return terms

    monkeypatch.setattr(trainer, "_micro_batch_loss", poisoned)


def _poison_gradient(trainer: MGPOTrainer, monkeypatch: pytest.MonkeyPatch, steps: set[int]) -> None:
    """Leave the loss finite but make one weight's gradient infinite after the backward pass."""
    original = trainer.accelerator.backward

    def backward(loss, **kwargs):
        original(loss, **kwargs)
        if trainer.step in steps:
            parameter = next(p for p in trainer.model.parameters() if p.grad is not None)
            parameter.grad[(0,) * parameter.grad.dim()] = float("inf")

    monkeypatch.setattr(trainer.accelerator, "backward", backward)


@pytest.mark.parametrize("poison", [_poison_loss, _poison_gradient], ids=["nan-loss", "inf-gradient"])
def test_a_non_finite_update_is_skipped_and_the_next_one_applies(tiny_training_config, monkeypatch, capsys, poison):
    trainer = MGPOTrainer(tiny_training_config(steps=2, save_every=100))
    poison(trainer, monkeypatch, {0})
    before = _weights(trainer)
    first = trainer.train(steps=1, progress=False)[0]
    assert first["skipped_updates"] == 1 and first["updates"] == 0
    after_skip = _weights(trainer)
    for name, value in before.items():
        assert torch.equal(after_skip[name], value), f"{name} changed in a skipped update"
        assert torch.isfinite(after_skip[name]).all()
    assert all(p.grad is None for p in trainer.model.parameters())  # zeroed: nothing carries into the next update
    assert not trainer.optimizer.state  # AdamW's moments never saw the bad gradient
    assert "skipped an update with a non-finite loss or gradient" in capsys.readouterr().err

    second = trainer.train(steps=2, progress=False)[0]
    assert second["skipped_updates"] == 0 and second["updates"] == 1 and trainer.skip_streak == 0
    assert any(not torch.equal(p, before[name]) for name, p in trainer.model.named_parameters())


def test_too_many_skips_in_a_row_stop_the_run_with_the_last_good_checkpoint_intact(tiny_training_config, monkeypatch):
    trainer = MGPOTrainer(tiny_training_config(steps=5, save_every=1, max_consecutive_skips=2))
    trainer.train(steps=1, progress=False)  # one good step, checkpointed
    good = _weights(trainer)
    _poison_loss(trainer, monkeypatch, {1, 2, 3, 4})
    with pytest.raises(NonFiniteUpdates, match=r"2 updates in a row.*step-000002, is intact"):
        trainer.train(progress=False)
    # The first poisoned step was skipped and checkpointed as step 2 (its weights equal step 1's); the second stopped the run.
    last = latest_checkpoint(Path(trainer.config.output_dir))
    assert last.name == "step-000002"
    for name, value in _weights(trainer).items():
        assert torch.equal(value, good[name])
    fresh = MGPOTrainer(tiny_training_config(steps=5, save_every=1))
    fresh.load_checkpoint()
    assert fresh.step == 2 and fresh.skip_streak == 1  # the streak resumes with the run
    for name, value in _weights(fresh).items():
        assert torch.equal(value, good[name])
