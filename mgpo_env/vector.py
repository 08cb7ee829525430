"""Run several ``mgpo/HighResVQA-v0`` episodes side by side with Gymnasium's vector environments.

Both ``gymnasium.vector.SyncVectorEnv`` and ``gymnasium.vector.AsyncVectorEnv``
work; :func:`make_vector_env` builds either with the right settings.

How the batch looks (``num_envs = n``):

* **Actions** are a tuple (or list) of ``n`` strings, one model reply per env:
  ``envs.step(("[0, 0, 200, 200]", "\\\\boxed{B}"))``. The action space is the
  batched text space, ``Tuple(AnyText, ..., AnyText)``.
* **Observations** are a dict: ``image`` is ``uint8`` of shape ``(n, H, W, 3)``,
  ``image_size`` ``(n, 2)``, ``turn`` ``(n,)``; ``history`` (a ``Sequence`` space
  of variable length) is not stacked: it is a tuple of ``n`` per-env histories.
* **Rewards, terminated, truncated** are arrays of shape ``(n,)``.
* **Infos** are a dict of arrays, one entry per env, each key with a boolean
  ``"_key"`` mask saying which envs filled it (Gymnasium's convention).

Autoreset (Gymnasium's default, ``AutoresetMode.NEXT_STEP``): when an env's
episode ends at step ``t`` (its final answer was graded), step ``t`` returns the
terminal observation, the reward and ``terminated=True`` as usual. The env is
reset on the **next** call to ``step`` (``t + 1``): for that env the action
passed at ``t + 1`` is **ignored**, the observation is the first one of a new
episode (``turn == 0``), the reward is ``0.0`` and ``terminated`` is ``False``.
A rollout loop must therefore not count the action sent to an env right after
its terminal step. Envs run in lockstep but episodes need not: in ``"free"``
protocol, episodes of different lengths end and restart independently.

``AsyncVectorEnv`` needs ``shared_memory=False`` here (see
:func:`make_vector_env`); :func:`gymnasium.make_vec` works too when given
``vector_kwargs={"shared_memory": False}`` for ``vectorization_mode="async"``.

A worker process that dies (killed by the kernel's OOM killer, a signal, a crash in
native code) leaves Gymnasium's ``AsyncVectorEnv`` with a bare ``BrokenPipeError`` or
``EOFError``. :func:`make_vector_env` builds a :class:`SupervisedAsyncVectorEnv`
instead, which raises :class:`WorkerDiedError` naming the worker, its process id and
how it ended, and terminates the other workers so that nothing hangs; ``timeout``
bounds every wait for a worker that is alive but stuck. An exception raised by the
environment inside a worker is re-raised by Gymnasium itself, with its message.

Example:
    >>> envs = make_vector_env(2, dataset_kwargs={"num_samples": 4, "canvas_size": 512},
    ...                        observation_image_shape=(112, 112), min_pixels=56 * 56, max_pixels=112 * 112)
    >>> obs, info = envs.reset(seed=0)
    >>> obs["image"].shape, obs["turn"].tolist()
    ((2, 112, 112, 3), [0, 0])
    >>> obs, reward, terminated, truncated, info = envs.step(("[0, 0, 60, 60]", "no box"))
    >>> info["box_valid"].tolist(), terminated.tolist()
    ([True, False], [False, False])
    >>> obs, reward, terminated, truncated, info = envs.step(("\\\\boxed{A}", "\\\\boxed{A}"))
    >>> terminated.tolist()
    [True, True]
    >>> obs, reward, terminated, truncated, info = envs.step(("ignored", "ignored"))  # the autoreset step
    >>> obs["turn"].tolist(), reward.tolist(), terminated.tolist()
    ([0, 0], [0.0, 0.0], [False, False])
    >>> envs.close()
"""

from __future__ import annotations

import signal
import time
from typing import Any, Callable, Optional, Sequence, Union

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

__all__ = ["make_vector_env", "env_fns", "SupervisedAsyncVectorEnv", "WorkerDiedError"]

EnvWrapper = Callable[[gym.Env], gym.Env]


def env_fns(
    num_envs: int,
    env_id: str = "mgpo/HighResVQA-v0",
    wrappers: Sequence[EnvWrapper] = (),
    **env_kwargs: Any,
) -> list[Callable[[], gym.Env]]:
    """``num_envs`` zero-argument constructors, each making ``env_id`` with ``env_kwargs`` and applying ``wrappers``.

    Constructors rather than envs, because ``AsyncVectorEnv`` builds each env inside
    its own worker process (only the constructor is pickled, never an open env).
    """
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")

    def make() -> gym.Env:
        import mgpo_env  # noqa: F401  (registers the env id inside a fresh worker process)

        env = gym.make(env_id, **env_kwargs)
        for wrapper in wrappers:
            env = wrapper(env)
        return env

    return [make for _ in range(num_envs)]


class WorkerDiedError(RuntimeError):
    """A worker process of an :class:`SupervisedAsyncVectorEnv` ended; the message names it and how it ended."""


def _how_it_ended(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "still running but its pipe is closed"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name} (exit code {exitcode})"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class SupervisedAsyncVectorEnv(AsyncVectorEnv):
    """``AsyncVectorEnv`` that reports a dead worker as :class:`WorkerDiedError` and never waits forever.

    Args:
        env_fns: the environment constructors (see :func:`env_fns`).
        timeout: the default seconds ``reset``/``step`` wait for the workers (None: no limit);
            past it Gymnasium raises ``multiprocessing.TimeoutError``.
        **kwargs: ``AsyncVectorEnv``'s own.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], *, timeout: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(env_fns, **kwargs)
        self.timeout = timeout

    def reset_async(self, *args: Any, **kwargs: Any) -> None:
        self._supervised(super().reset_async, *args, **kwargs)

    def reset_wait(self, timeout: Optional[float] = None, *args: Any, **kwargs: Any) -> Any:
        return self._supervised(super().reset_wait, self.timeout if timeout is None else timeout, *args, **kwargs)

    def step_async(self, actions: Any) -> None:
        self._supervised(super().step_async, actions)

    def step_wait(self, timeout: Optional[float] = None) -> Any:
        return self._supervised(super().step_wait, self.timeout if timeout is None else timeout)

    def dead_workers(self) -> list[str]:
        """One line per worker that is no longer running: its index, process id and how it ended."""
        lines = []
        for index, process in enumerate(self.processes):
            if not process.is_alive():
                lines.append(f"worker {index} (pid {process.pid}) {_how_it_ended(process.exitcode)}")
        return lines

    def _supervised(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            deadline = time.monotonic() + 2.0  # a closed pipe may be seen a moment before its process has ended
            while not self.dead_workers() and time.monotonic() < deadline:
                time.sleep(0.01)
            dead = self.dead_workers() or [f"a worker's pipe closed ({type(error).__name__})"]
            self.close(terminate=True)  # the others are stopped: nothing is left waiting
            raise WorkerDiedError(
                f"{'; '.join(dead)}. The vector environment was closed; its other workers were stopped. "
                "Look at the worker's output above, and at memory (the kernel's OOM killer sends SIGKILL)"
            ) from error


def make_vector_env(
    num_envs: int,
    asynchronous: bool = False,
    *,
    env_id: str = "mgpo/HighResVQA-v0",
    wrappers: Sequence[EnvWrapper] = (),
    vector_kwargs: Optional[dict[str, Any]] = None,
    **env_kwargs: Any,
) -> Union[SyncVectorEnv, AsyncVectorEnv]:
    """A ``SyncVectorEnv`` (default) or ``AsyncVectorEnv`` of ``num_envs`` copies of ``env_id``.

    Args:
        num_envs: how many envs step in lockstep.
        asynchronous: one worker process per env (``AsyncVectorEnv``) instead of
            stepping them one after the other in this process.
        env_id: the registered id (any env works, e.g. a wrapped one via ``wrappers``).
        wrappers: callables applied in order to each env (e.g. ``NumericActionWrapper``).
        vector_kwargs: extra keyword arguments for the vector env class (e.g. ``autoreset_mode``; for
            the asynchronous one also ``timeout``, the seconds a reset or step may wait for the workers).
        **env_kwargs: passed to ``gym.make`` (``dataset_kwargs``, ``protocol``, ...).

    Seed with ``envs.reset(seed=s)``: env ``i`` gets seed ``s + i``.
    """
    fns = env_fns(num_envs, env_id, wrappers, **env_kwargs)
    kwargs = dict(vector_kwargs or {})
    if not asynchronous:
        return SyncVectorEnv(fns, **kwargs)
    # The observation's `history` is a `Sequence` space (a conversation grows turn
    # by turn), which has no fixed shape, so AsyncVectorEnv cannot preallocate a
    # shared-memory buffer for it and refuses with shared_memory=True (its default).
    # Without shared memory each worker pickles its observation through the pipe,
    # which costs one copy of the image per step: negligible next to a model's forward pass.
    if kwargs.get("shared_memory", False):
        raise ValueError(
            "shared_memory=True cannot work: the observation's 'history' is a variable-length Sequence space; "
            "leave shared_memory out (it is set to False)"
        )
    kwargs["shared_memory"] = False
    return SupervisedAsyncVectorEnv(fns, **kwargs)
