"""FSDP2 on the CPU (gloo): two sharded processes against one, checkpoints resumed 2 -> 2 and 2 -> 1,
the model folder a sharded run writes, and launches that cannot give a process group."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.cli import main  # noqa: E402
from mgpo_agents.config import preset  # noqa: E402
from mgpo_agents.qwen_processor import load_model  # noqa: E402
from mgpo_agents.sharding import LaunchError, start_process_group  # noqa: E402

WORKER = Path(__file__).with_name("fsdp_worker.py")
# 2 ranks against 1 process: the same sums in another order. The largest difference measured
# after 3 steps was 7.4e-7 (weights of magnitude ~0.1 moved by lr 1e-3); the DDP test allows the same.
ATOL, RTOL = 1e-5, 1e-4
LAUNCH_TIMEOUT_S = 240  # a whole launch; every process is killed after it, so nothing hangs
ENV = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", MGPO_PROCESS_GROUP_TIMEOUT="120")
STARTED = "FSDP: rank"  # printed by every rank once the process group is up and the model sharded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(processes: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]


def launch(make_command, *, ranks: int) -> str:
    """Run a launch to the end (or its timeout); retried once when it failed before every rank started.

    A process group on gloo sometimes fails at start-up (1 launch in 5 aborted in the probe
    of issue #27); a failure after start-up is a real one and is not retried.
    """
    for attempt in (1, 2):
        done = subprocess.run(make_command(), env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
        output = done.stdout + done.stderr
        if done.returncode == 0:
            return output
        if output.count(STARTED) >= ranks or attempt == 2:
            raise AssertionError(f"launch failed (exit {done.returncode}, attempt {attempt}):\n{output[-4000:]}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def runs(tiny_dir, tmp_path_factory):
    """3 steps of 2 questions x 4 rollouts, a checkpoint after every step:
    ``a`` 2 FSDP ranks; ``c`` 2 ranks resumed from a's step 2; ``b`` 1 process; ``d`` 1 process resumed from a's step 2."""
    root = tmp_path_factory.mktemp("fsdp")
    config = preset(
        "tiny-cpu", model=str(tiny_dir), dataset_kwargs={"num_samples": 8, "canvas_size": 1024, "target_size": 64, "clutter": 10},
        min_pixels=16 * 28 * 28, max_pixels=36 * 28 * 28, group_size=4, prompts_per_step=2, mini_batch_prompts=2,
        micro_batch_size=2, max_new_tokens=6, learning_rate=1e-3, steps=3, save_every=1, keep_checkpoints=3,
        tensorboard=False, distributed="fsdp",
        # A held-out question after step 2: the main process plays it alone while the other waits (no lock-step generation).
        eval_dataset="synthetic", eval_dataset_kwargs={"num_samples": 1, "canvas_size": 1024, "target_size": 64, "seed": 1}, eval_every=2,
    )
    config.save(root / "fsdp.json")
    config.distributed = "ddp"  # one plain process: no launcher, no process group
    config.save(root / "one.json")
    step2 = root / "a" / "checkpoints" / "step-000002"
    two = launch(lambda: torchrun(2, str(WORKER), str(root / "fsdp.json"), str(root / "a"), f"{root / 'c'}={step2}"), ranks=2)
    launch(lambda: [sys.executable, str(WORKER), str(root / "one.json"), str(root / "b"), f"{root / 'd'}={step2}"], ranks=0)
    return root, two


def final(root: Path, run: str, name: str = "final.pt") -> dict:
    return torch.load(root / run / name, weights_only=True)


def assert_close(a: dict, b: dict, exact: bool) -> None:
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        x, y = a["model"][name], b["model"][name]
        assert torch.equal(x, y) if exact else torch.allclose(x, y, atol=ATOL, rtol=RTOL), name
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for name, state in a["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            x, y = state[key], b["optimizer"]["state"][name][key]
            assert torch.equal(x, y) if exact else torch.allclose(x, y, atol=ATOL, rtol=RTOL), (name, key)


# ------------------------------------------------------------- two ranks
@pytest.mark.slow
def test_each_rank_says_it_holds_its_shard(runs, tiny_dir):
    _, output = runs
    model = load_model(tiny_dir)
    parameters = list(model.parameters())  # tied weights once
    total = sum(p.numel() for p in parameters)
    for rank in (0, 1):  # fully_shard splits dim 0 as torch.chunk does: ceil(n / 2) rows first
        held = 0
        for p in parameters:
            rows = p.shape[0]
            first = math.ceil(rows / 2)
            held += (first if rank == 0 else rows - first) * (p.numel() // rows)
        assert f"FSDP: rank {rank} holds {held / 1e6:.1f}M of {total / 1e6:.1f}M parameters" in output


@pytest.mark.slow
def test_two_fsdp_ranks_match_one_process(runs, tiny_dir):
    root, _ = runs
    for run in ("a", "b"):  # both evaluated after step 2; under FSDP the main process played it alone
        summaries = [json.loads(line) for line in (root / run / "eval" / "summary.jsonl").read_text().splitlines()]
        assert [(s["step"], s["episodes"]) for s in summaries] == [(2, 1)]
    two, one = final(root, "a"), final(root, "b")
    assert_close(two, one, exact=False)
    start = load_model(tiny_dir).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in one["model"].items()), "training did not change the weights"


@pytest.mark.slow
def test_resume_from_two_ranks_on_two_ranks_is_exact(runs):
    root, _ = runs
    assert_close(final(root, "c"), final(root, "a"), exact=True)


@pytest.mark.slow
def test_resume_from_two_ranks_on_one_process(runs):
    root, _ = runs
    checkpoint = root / "a" / "checkpoints" / "step-000002"
    resumed = final(root, "d", "resumed.pt")
    saved = load_model(checkpoint).state_dict()
    assert resumed["step"] == 2 and resumed["model"].keys() == saved.keys()
    assert all(torch.equal(resumed["model"][k], saved[k]) for k in saved), "the loaded weights are not the saved ones"
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    for name, state in optimizer["state"].items():
        assert all(torch.equal(state[key], resumed["optimizer"]["state"][name][key]) for key in state), name
    # From there one process does the work of two: equal within the tolerance of 2 ranks against 1.
    assert_close(final(root, "d"), final(root, "a"), exact=False)


@pytest.mark.slow
def test_a_sharded_checkpoint_is_a_model_folder(runs, tmp_path, capsys):
    root, _ = runs
    checkpoints = root / "a" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000001", "step-000002", "step-000003"]  # no temp folder left
    last = checkpoints / "step-000003"
    weights = load_model(last).state_dict()  # from_pretrained
    two = final(root, "a")["model"]
    assert weights.keys() == two.keys() and all(torch.equal(weights[k], two[k]) for k in two)
    assert json.loads((last / "trainer_state.json").read_text())["step"] == 3
    code = main(["eval", "--model", str(last), "--dataset-kwargs", json.dumps({"num_samples": 2, "canvas_size": 512, "target_size": 48}),
                 "--min-pixels", str(16 * 28 * 28), "--max-pixels", str(36 * 28 * 28), "--max-new-tokens", "4", "--output", str(tmp_path / "eval")])
    assert code == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["episodes"] == 2


# ------------------------------------------------------- bad launches
@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_fsdp_without_a_launcher_is_an_error(no_launcher):
    with pytest.raises(LaunchError, match="WORLD_SIZE is unset"):
        start_process_group("fsdp")
    assert start_process_group("ddp") == 1  # one plain process


def test_a_launcher_that_starts_no_process_group_is_an_error(no_launcher):
    # What `accelerate launch --cpu --num_processes 2` leaves (accelerate's simple launcher): an address, no world.
    no_launcher.setenv("MASTER_ADDR", "127.0.0.1")
    no_launcher.setenv("MASTER_PORT", "29500")
    for distributed in ("ddp", "fsdp"):
        with pytest.raises(LaunchError, match="WORLD_SIZE is not"):
            start_process_group(distributed)


def test_mgpo_train_refuses_fsdp_without_a_launcher(no_launcher, tmp_path, capsys):
    code = main(["train", "--distributed", "fsdp", "--output", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--distributed fsdp" in err and "torchrun" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_process_group_that_cannot_start_says_where_it_looked(tmp_path):
    """Rank 1 of 2 with nobody at MASTER_ADDR:MASTER_PORT: a clear error within the timeout, not a hang."""
    port = free_port()  # closed again: nothing listens there
    env = dict(ENV, WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), MGPO_PROCESS_GROUP_TIMEOUT="3")
    code = "from mgpo_agents.sharding import start_process_group; start_process_group('fsdp')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "LaunchError: the process group did not start" in done.stderr
    assert f"MASTER_ADDR=127.0.0.1, MASTER_PORT={port}" in done.stderr and "timeout 3 s" in done.stderr


@pytest.mark.slow
def test_the_memory_plan_is_what_each_rank_holds(runs, tiny_dir):
    """The --dry-run figures against the bytes the processes of the runs above stored (policy, AdamW state, reference)."""
    from mgpo_agents.config import MGPOConfig
    from mgpo_agents.memory_plan import memory_plan

    root, _ = runs
    held = [json.loads((root / "a" / f"held-rank{r}.json").read_text()) for r in (0, 1)]
    one = json.loads((root / "b" / "held-rank0.json").read_text())
    sharded = memory_plan(MGPOConfig.load(root / "fsdp.json"), 2, tiny_dir)
    whole = memory_plan(MGPOConfig.load(root / "one.json"), 1, tiny_dir)
    for plan, measured in ((sharded, held[0]), (whole, one)):
        assert (plan.parameters, plan.optimizer, plan.reference) == (measured["parameters"], measured["optimizer"], measured["reference"])
    for part in ("parameters", "reference"):  # the two shards make the whole, rank 0's the larger
        assert held[0][part] + held[1][part] == one[part] and held[0][part] >= held[1][part]
    assert 0.45 < sharded.state / whole.state < 0.55


@pytest.mark.slow
def test_accelerate_launch_cpu_is_refused_not_run_twice(tmp_path, tiny_dir):
    """`accelerate launch --cpu --num_processes 2` starts no process group: mgpo train must say so and write nothing."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "-m", "mgpo_agents.train_command",
               "--model", str(tiny_dir), "--steps", "1", "--distributed", "fsdp", "--output", str(tmp_path / "run"), "--no-progress"]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    assert done.returncode != 0
    assert "MASTER_ADDR is set" in done.stderr and "WORLD_SIZE is not" in done.stderr
    assert not (tmp_path / "run").exists()
