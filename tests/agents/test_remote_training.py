"""Training through an ``mgpo serve`` server equals training on local environments."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openenv", reason="the 'serve' extra (OpenEnv) is not installed")

from mgpo_env.remote.client import RemoteHighResVQAEnv  # noqa: E402
from mgpo_env.remote.server import ServerSettings, ServerThread  # noqa: E402

from .forced_rollouts import forcing  # noqa: E402

TIMING_METRICS = ("time", "per_second")


def server_settings(config) -> ServerSettings:
    """The server a training config needs: its dataset and every environment option it sets."""
    env_kwargs = dict(
        config.env_kwargs, protocol=config.protocol, max_turns=config.max_turns, min_pixels=config.min_pixels, max_pixels=config.max_pixels, box_frame=config.box_frame
    )
    return ServerSettings(port=0, dataset=config.dataset, dataset_kwargs=config.dataset_kwargs, env_kwargs=env_kwargs)


def comparable(metrics: dict) -> dict:
    """The metrics that do not measure time, NaN made comparable."""
    return {k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items() if not any(w in k for w in TIMING_METRICS)}


def train_one_step(trainer) -> list[dict]:
    """One step in which each rollout crops a different box and half of them answer right."""
    dataset = trainer.dataset

    def reply(trajectory, turn):
        if turn == 0:
            size = 30 + 20 * trajectory.rollout
            return f"[{5 + 3 * trajectory.rollout}, 10, {5 + 3 * trajectory.rollout + size}, {10 + size}]"
        truth = dataset[trajectory.sample_index].answer
        return "\\boxed{%s}" % (truth if trajectory.rollout % 2 == 0 else "ABCD"[("ABCD".index(truth) + 1) % 4])

    trainer.engine.extra_logits_processors = forcing(trainer.processor, reply)
    return trainer.train(progress=False)


@pytest.mark.slow
def test_one_mgpo_step_through_the_server_equals_the_local_step(tmp_path, tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    local = MGPOTrainer(tiny_training_config(tmp_path / "local", steps=1, max_new_tokens=40))
    before = {name: p.detach().clone() for name, p in local.model.named_parameters()}
    local_metrics = train_one_step(local)
    with ServerThread(server_settings(local.config)) as server:
        remote = MGPOTrainer(tiny_training_config(tmp_path / "remote", steps=1, max_new_tokens=40, env_url=server.url))
        remote_metrics = train_one_step(remote)
        envs = remote.engine.envs
        assert len(envs) == local.config.group_size and all(isinstance(env, RemoteHighResVQAEnv) for env in envs)
        assert server.env_server.active_sessions == local.config.group_size
        for env in envs:
            env.close()

    assert local_metrics[0]["valid_box_rate"] == 1.0 and local_metrics[0]["reward_mean"] == 0.5  # crops and a learning signal
    assert [comparable(m) for m in remote_metrics] == [comparable(m) for m in local_metrics]
    after_local, after_remote = dict(local.model.named_parameters()), dict(remote.model.named_parameters())
    assert any(not torch.equal(before[name], after_local[name]) for name in before)  # the step moved the policy
    for name in after_local:
        assert torch.equal(after_local[name], after_remote[name]), name


def test_a_server_with_other_options_is_refused_at_the_first_episode(tmp_path, tiny_training_config):
    from mgpo_agents.trainer import MGPOTrainer

    config = tiny_training_config(tmp_path, steps=1)
    settings = server_settings(config)
    settings.env_kwargs["max_pixels"] = config.max_pixels * 2
    with ServerThread(settings) as server:
        trainer = MGPOTrainer(tiny_training_config(tmp_path, steps=1, env_url=server.url))
        with pytest.raises(ValueError, match="max_pixels: server"):
            trainer.train(progress=False)


def test_rollout_recording_needs_local_environments(tiny_training_config):
    with pytest.raises(ValueError, match="save_rollouts_every"):
        tiny_training_config(env_url="http://127.0.0.1:1", save_rollouts_every=1)


def test_trl_tool_environment_over_the_server_equals_the_local_one():
    """TRL's environment_factory objects (crop tool, answer tool) give the same images and rewards remotely."""
    import numpy as np

    from mgpo_agents.trl_adapter import HighResVQAAnswerToolEnv, make_environment_factory

    task = {"num_samples": 4, "canvas_size": 512}
    settings = ServerSettings(port=0, dataset_kwargs=task, env_kwargs={"protocol": "free", "max_turns": 3})
    with ServerThread(settings) as server:
        remote = make_environment_factory(HighResVQAAnswerToolEnv, env_url=server.url, max_crops=2)()
        local = make_environment_factory(HighResVQAAnswerToolEnv, dataset_kwargs=task, max_crops=2)()
        for index in (0, 3):
            outputs = [(env.reset(index=index), env.crop(0, 0, 200, 200), env.crop(0, 0, 10, 10), env.crop(5, 5, 100, 90)) for env in (remote, local)]
            for got, want in zip(*outputs):
                assert [p["type"] for p in got] == [p["type"] for p in want] if isinstance(want, list) else got == want
                if isinstance(want, list):
                    assert got[1] == want[1] and np.array_equal(np.asarray(got[0]["image"]), np.asarray(want[0]["image"]))
            truth = local.sample.answer
            assert remote.answer(truth) == local.answer(truth) and remote.get_reward() == local.get_reward() == 1.0
        with pytest.raises(ValueError, match="max_turns: server 3, expected 2"):
            HighResVQAAnswerToolEnv(env_url=server.url, max_crops=1)
        remote.env.close()
