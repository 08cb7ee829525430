"""A worker of the asynchronous vector env that dies is reported with how it ended, and nothing hangs."""

from __future__ import annotations

import os
import signal
import threading
import time

import gymnasium as gym
import pytest

from mgpo_env.vector import SupervisedAsyncVectorEnv, WorkerDiedError, make_vector_env

SMALL = dict(dataset_kwargs={"num_samples": 4, "canvas_size": 256}, observation_image_shape=(56, 56), min_pixels=28 * 28, max_pixels=56 * 56)
# Every wait is bounded: a hang would end as multiprocessing.TimeoutError, not as the error the tests expect.
BOUNDED = {"timeout": 60}


class SlowStep(gym.Wrapper):
    """Steps take a second, so that a worker can be killed while it works."""

    def step(self, action):
        time.sleep(1.0)
        return self.env.step(action)


class FailingStep(gym.Wrapper):
    def step(self, action):
        raise RuntimeError("the environment broke in worker code")


def _kill_later(pid: int, delay: float) -> None:
    threading.Timer(delay, os.kill, (pid, signal.SIGKILL)).start()


def test_make_vector_env_builds_the_supervised_one():
    envs = make_vector_env(2, asynchronous=True, vector_kwargs=BOUNDED, **SMALL)
    try:
        assert isinstance(envs, SupervisedAsyncVectorEnv) and envs.timeout == 60
    finally:
        envs.close()


def test_a_worker_killed_between_steps_is_named_with_its_signal():
    envs = make_vector_env(2, asynchronous=True, vector_kwargs=BOUNDED, **SMALL)
    envs.reset(seed=0)
    victim = envs.processes[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    with pytest.raises(WorkerDiedError, match=rf"worker 1 \(pid {victim.pid}\) killed by SIGKILL"):
        envs.step(("[0, 0, 10, 10]", "[0, 0, 10, 10]"))
    assert envs.closed and not any(p.is_alive() for p in envs.processes)  # the survivor was stopped too


def test_a_worker_killed_during_a_step_is_reported_not_waited_for():
    envs = make_vector_env(3, asynchronous=True, wrappers=[SlowStep], vector_kwargs=BOUNDED, **SMALL)
    envs.reset(seed=0)
    victim = envs.processes[2]
    _kill_later(victim.pid, 0.3)  # while the step is in flight
    with pytest.raises(WorkerDiedError, match=rf"worker 2 \(pid {victim.pid}\) killed by SIGKILL"):
        envs.step(("[0, 0, 10, 10]",) * 3)
    assert not any(p.is_alive() for p in envs.processes)


def test_an_exception_in_a_worker_is_reraised_with_its_message():
    envs = make_vector_env(2, asynchronous=True, wrappers=[FailingStep], vector_kwargs=BOUNDED, **SMALL)
    envs.reset(seed=0)
    try:
        with pytest.raises(RuntimeError, match="the environment broke in worker code"):
            envs.step(("a", "b"))
    finally:
        envs.close(terminate=True)
