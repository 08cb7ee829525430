"""The memory plan of `mgpo train --dry-run` against counts made on the real tiny model and the published 7B shapes."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.cli import main  # noqa: E402
from mgpo_agents.config import preset  # noqa: E402
from mgpo_agents.memory_plan import memory_plan  # noqa: E402
from mgpo_agents.qwen_processor import load_model  # noqa: E402


@pytest.fixture(scope="module")
def weights(tiny_dir):
    """The tiny model's parameters, loaded for real in float32 (tied weights once)."""
    return list(load_model(tiny_dir, dtype="float32").parameters())


def test_whole_copies_hold_every_weight_gradient_moment_and_the_reference(tiny_dir, weights):
    plan = memory_plan(preset("tiny-cpu", model=str(tiny_dir), dtype="float32"), 4, tiny_dir)
    size = sum(p.numel() * 4 for p in weights)
    assert (plan.parameters, plan.gradients, plan.reference) == (size, size, size)  # ddp: the world divides nothing
    assert plan.optimizer == 2 * size + 4 * len(weights)  # exp_avg, exp_avg_sq and a float32 step per tensor
    assert plan.parameters_total == sum(p.numel() for p in weights)
    assert plan.gathered_in_pass == plan.gathered_for_rollouts == 0 and plan.peak == 5 * size + 4 * len(weights)


def test_fsdp_holds_rank_zeros_chunk_of_every_tensor(tiny_dir, weights):
    plan = memory_plan(preset("tiny-cpu", model=str(tiny_dir), dtype="float32", distributed="fsdp"), 8, tiny_dir)
    shard = sum(p.detach().chunk(8, dim=0)[0].numel() * 4 for p in weights)
    assert (plan.parameters, plan.gradients, plan.reference) == (shard, shard, shard)
    assert plan.gathered_for_rollouts == sum(p.numel() * 4 for p in weights)
    assert 0 < plan.gathered_in_pass < plan.gathered_for_rollouts


def test_lora_trains_only_the_adapters_and_needs_no_reference(tiny_dir):
    model = load_model(tiny_dir)
    rank = 8
    adapted = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")]
    expected = sum(rank * (m.in_features + m.out_features) for m in adapted)
    plan = memory_plan(preset("tiny-cpu", model=str(tiny_dir), dtype="bfloat16", lora_rank=rank), 1, tiny_dir)
    assert plan.parameters_trainable == expected and plan.reference == 0
    assert plan.gradients == expected * 4  # peft keeps adapters in float32 beside a bfloat16 base
    assert plan.dtype == "bfloat16"


def test_the_published_7b_has_its_parameter_count(tmp_path):
    from mgpo_agents.tiny_model.sizes import qwen25vl_config

    (tmp_path / "config.json").write_text(json.dumps(qwen25vl_config("7b")))
    plan = memory_plan(preset("paper", model=str(tmp_path), distributed="fsdp"), 8, tmp_path)
    assert 8.28e9 < plan.parameters_total < 8.30e9
    assert plan.dtype == "bfloat16"  # "auto", planned as on a GPU
    assert plan.parameters == pytest.approx(plan.parameters_total * 2 / 8, rel=1e-3)


def test_dry_run_prints_the_plan_and_trains_nothing(tiny_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # a launcher's world size is the default
    code = main(["train", "--dry-run", "--model", str(tiny_dir), "--distributed", "fsdp", "--output", str(tmp_path / "run")])
    assert code == 0
    out = capsys.readouterr().out
    assert "2 processes, fsdp" in out
    for part in ("parameters", "gradients", "optimizer state", "reference model", "peak"):
        assert f"  {part}" in out
    assert not (tmp_path / "run").exists()
    assert main(["train", "--dry-run", "--model", str(tiny_dir), "--num-processes", "4", "--distributed", "fsdp"]) == 0
    assert "4 processes, fsdp" in capsys.readouterr().out
    assert main(["train", "--dry-run", "--model", "builtin:tiny"]) == 2
    assert "--model DIR" in capsys.readouterr().err
