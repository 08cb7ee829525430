"""Preemption: a real ``mgpo train`` process stopped by a real signal, then resumed with the same command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mgpo_agents.cli import main  # noqa: E402
from mgpo_agents.faults import EXIT_PREEMPTED  # noqa: E402
from mgpo_agents.preemption import StopSignals  # noqa: E402

STEPS = 6


def _command(config_file: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mgpo_agents.cli", "train", "--config", str(config_file), "--output", str(out), "--no-progress", *extra]


def _final_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "checkpoints" / f"step-{STEPS:06d}" / "model.safetensors"))


def _logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _start_and_signal_after_first_step(command: list[str], number: int) -> subprocess.CompletedProcess:
    """Run ``command``, send signal ``number`` once step 1 is logged, and wait for it to end."""
    out = Path(command[command.index("--output") + 1])
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no step was logged"
        time.sleep(0.02)
    process.send_signal(number)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture
def run_files(tmp_path, tiny_training_config):
    """(config file, the final weights of an uninterrupted run of it): checkpoints only at the end."""
    config = tiny_training_config(steps=STEPS, save_every=100)
    config_file = tmp_path / "config.json"
    config.save(config_file)
    straight = tmp_path / "straight"
    assert main(_command(config_file, straight)[3:]) == 0
    return config_file, _final_weights(straight)


def _assert_same(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert weights.keys() == expected.keys()
    for name in expected:
        assert torch.equal(weights[name], expected[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_step_writes_a_checkpoint_and_resume_ends_identical(tmp_path, run_files, number):
    config_file, expected = run_files
    out = tmp_path / "preempted"
    stopped = _start_and_signal_after_first_step(_command(config_file, out), number)
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stderr[-3000:]
    name = signal.Signals(number).name
    assert f"stopped by {name} after step" in stopped.stderr and "--resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    checkpoints = sorted((out / "checkpoints").glob("step-*"))
    assert len(checkpoints) == 1  # the preemption checkpoint, written atomically: no temporary folder left
    step = int(checkpoints[0].name.split("-")[1])
    assert 1 <= step < STEPS and not list((out / "checkpoints").glob(".*"))
    assert _logged_steps(out) == list(range(1, step + 1))

    resumed = subprocess.run(_command(config_file, out, "--resume"), env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {checkpoints[0]} at step {step}" in resumed.stdout
    _assert_same(_final_weights(out), expected)
    assert _logged_steps(out) == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_restarts_from_the_beginning_with_resume(tmp_path, run_files):
    config_file, expected = run_files
    out = tmp_path / "killed"
    killed = _start_and_signal_after_first_step(_command(config_file, out), signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert not list((out / "checkpoints").glob("step-*")) if (out / "checkpoints").exists() else True
    assert _logged_steps(out)  # the killed run logged steps the restart plays again

    restarted = subprocess.run(_command(config_file, out, "--resume"), env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "starting from the beginning" in restarted.stdout
    assert "Traceback" not in restarted.stderr and "FileNotFoundError" not in restarted.stderr
    _assert_same(_final_weights(out), expected)
    assert _logged_steps(out) == list(range(1, STEPS + 1))  # each step once: the killed run's rows were replaced


def test_the_first_signal_is_recorded_and_the_second_interrupts():
    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        assert signals.received is None
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        assert signals.received == "SIGTERM"
        with pytest.raises(KeyboardInterrupt, match="second stop signal"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handlers are put back
