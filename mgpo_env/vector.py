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

from typing import Any, Callable, Optional, Sequence, Union

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

__all__ = ["make_vector_env", "env_fns"]

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
        vector_kwargs: extra keyword arguments for the vector env class (e.g. ``autoreset_mode``).
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
    return AsyncVectorEnv(fns, **kwargs)
