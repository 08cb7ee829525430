"""Checkpoint state: tensor-only files that load with weights_only=True, name-keyed optimizer state,
older checkpoints still readable, and LoRA adapters resumed exactly through the one loading path."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.checkpoint import (  # noqa: E402
    full_optimizer_state,
    load_optimizer_state,
    load_rng_state,
    rng_state,
    set_rng_state,
)


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected


def test_an_older_rng_file_with_a_numpy_array_still_loads(tmp_path):
    older = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save(older, tmp_path / "rng.pt")
    expected = draws()
    set_rng_state(load_rng_state(tmp_path / "rng.pt"))
    assert draws() == expected


def test_an_rng_file_that_unpickles_objects_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled",))

    with open(tmp_path / "rng.pt", "wb") as f:
        pickle.dump({"python": Payload()}, f)
    with pytest.raises(pickle.UnpicklingError):
        load_rng_state(tmp_path / "rng.pt")


def small_run():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).square().sum().backward()
    optimizer.step()
    return model, optimizer


def test_optimizer_state_is_keyed_by_parameter_name_and_loads_into_a_fresh_optimizer(tmp_path):
    model, optimizer = small_run()
    state = full_optimizer_state(model, optimizer)
    assert set(state["state"]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    torch.save(state, tmp_path / "optimizer.pt")
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    load_optimizer_state(model, fresh, tmp_path / "optimizer.pt")
    for old, new in zip(optimizer.state_dict()["state"].values(), fresh.state_dict()["state"].values()):
        assert all(torch.equal(old[k], new[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    # An older checkpoint's position-keyed state (optimizer.state_dict()) loads too.
    torch.save(optimizer.state_dict(), tmp_path / "older.pt")
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    load_optimizer_state(model, fresh, tmp_path / "older.pt")
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_saving_before_the_first_update_leaves_the_optimizer_as_it_was(tmp_path):
    """torch.distributed.checkpoint creates AdamW state (step 1, zero moments) when there is none; a save
    or a load must not, or the first real update's bias correction would differ from a run that never saved."""

    def first_update(save: bool) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        if save:
            state = full_optimizer_state(model, optimizer)
            assert state["state"] == {} and not optimizer.state
            torch.save(state, tmp_path / "optimizer.pt")
            load_optimizer_state(model, optimizer, tmp_path / "optimizer.pt")
            assert not optimizer.state
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(first_update(save=True), first_update(save=False))


@pytest.mark.slow
def test_lora_resume_continues_exactly(tmp_path, tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    def make(name: str, steps: int) -> MGPOTrainer:
        return MGPOTrainer(tiny_training_config(tmp_path / name, steps=steps, lora_rank=4, lora_alpha=8, learning_rate=1e-2, protocol="single_turn"))

    straight = make("a", 3)
    straight.train(progress=False)
    first = make("b", 1)
    first.train(progress=False)
    assert (Path(first.config.output_dir) / "checkpoints" / "step-000001" / "adapter_model.safetensors").exists()
    del first
    resumed = make("b", 3)
    before = {k: v.clone() for k, v in resumed.model.named_parameters() if "lora_B" in k}
    resumed.load_checkpoint()
    assert any(not torch.equal(before[k], p) for k, p in resumed.model.named_parameters() if "lora_B" in k), "the adapters were not loaded"
    resumed.train(progress=False)
    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
