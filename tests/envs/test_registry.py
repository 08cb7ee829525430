"""The explicit dataset registry (:mod:`mgpo_datasets.registry`): names, specs, and custom loaders."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest

import mgpo_env  # noqa: F401  (registers mgpo/HighResVQA-v0)
from mgpo_datasets import registry
from mgpo_datasets.registry import dataset_entry, register_dataset, registered_datasets, resolve_dataset
from mgpo_datasets.synthetic import SyntheticTask

BUILT_IN = ("synthetic", "vstar", "mme-realworld", "hr-bench", "jsonl", "hf")


@pytest.fixture(autouse=True)
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test registers into a copy of the registry, so no name it adds outlives it.

    The registry is process-wide and has no way to remove a name (on purpose: a
    name should mean one loader for the whole run).
    """
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def tiny_synthetic(argument: str, **kwargs: Any) -> SyntheticTask:
    """A custom loader: three small synthetic samples (``argument`` is ignored)."""
    return SyntheticTask(num_samples=3, canvas_size=512, **kwargs)


@pytest.fixture
def loader_calls() -> list[tuple[str, dict[str, Any]]]:
    """Registers ``"tiny"`` (no path) and ``"tiny-path"`` with a loader that records each ``(argument, kwargs)``."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def loader(argument: str, **kwargs: Any) -> SyntheticTask:
        calls.append((argument, kwargs))
        return tiny_synthetic(argument, **kwargs)

    register_dataset("tiny", loader, needs_path=False)
    register_dataset("tiny-path", loader)
    return calls


def test_the_built_in_names_are_registered_by_the_package():
    entries = registered_datasets()
    assert set(BUILT_IN) <= set(entries)
    assert not entries["synthetic"].needs_path and all(entries[name].needs_path for name in BUILT_IN[1:])
    # `mgpo data` relies on this flag to list every bad row instead of stopping at the first
    assert not entries["synthetic"].accepts_on_error and all(entries[name].accepts_on_error for name in BUILT_IN[1:])
    entries.pop("vstar")  # a copy: the registry itself is untouched
    assert "vstar" in registered_datasets()


def test_a_taken_name_is_refused_unless_overwrite():
    register_dataset("tiny", tiny_synthetic, needs_path=False)
    with pytest.raises(ValueError, match=r"dataset 'tiny' is already registered; pass overwrite=True to replace it"):
        register_dataset("tiny", SyntheticTask, needs_path=False)
    with pytest.raises(ValueError, match="'vstar' is already registered"):
        register_dataset("vstar", tiny_synthetic)
    assert dataset_entry("tiny").loader is tiny_synthetic

    def replacement(argument: str, **kwargs: Any) -> SyntheticTask:
        return SyntheticTask(num_samples=5, canvas_size=512)

    register_dataset("tiny", replacement, needs_path=False, overwrite=True)
    assert dataset_entry("tiny").loader is replacement and len(resolve_dataset("tiny")) == 5


@pytest.mark.parametrize("name", ["my:data", ":", "", None])
def test_names_with_a_colon_or_empty_are_refused(name):
    # The colon separates the name from its argument in a spec, so "my:data" could never be looked up.
    with pytest.raises(ValueError, match="a dataset name must be a non-empty string without ':'"):
        register_dataset(name, tiny_synthetic)


def test_a_loader_must_be_callable():
    with pytest.raises(TypeError, match="the loader for 'tiny' must be callable, got str"):
        register_dataset("tiny", "mgpo_datasets.synthetic:load_synthetic")  # type: ignore[arg-type]


def test_an_unknown_spec_lists_the_registered_names():
    register_dataset("tiny", tiny_synthetic, needs_path=False)
    with pytest.raises(ValueError, match=r"unknown dataset spec 'imagenet:/data'; use one of: ") as info:
        resolve_dataset("imagenet:/data")
    message = str(info.value)
    # names that need a path are shown with their colon, the others bare
    for shown in ("'synthetic'", "'vstar:...'", "'mme-realworld:...'", "'hr-bench:...'", "'jsonl:...'", "'hf:...'", "'tiny'"):
        assert shown in message


@pytest.mark.parametrize("spec", ["vstar", "vstar:"])
def test_a_name_that_needs_a_path_says_so(spec):
    with pytest.raises(ValueError, match=rf"dataset spec '{spec}' needs a path after the colon, e.g. 'vstar:/data/vstar'"):
        resolve_dataset(spec)


def test_the_argument_and_dataset_kwargs_reach_the_loader(loader_calls):
    data = resolve_dataset("tiny-path:some/where", seed=4)
    assert loader_calls == [("some/where", {"seed": 4})] and len(data) == 3


def test_gym_make_uses_a_registered_custom_loader(loader_calls):
    env = gym.make("mgpo/HighResVQA-v0", dataset="tiny", dataset_kwargs={"seed": 7})
    try:
        obs, info = env.reset(seed=0, options={"index": 2})
        assert loader_calls == [("", {"seed": 7})]
        assert len(env.unwrapped.dataset) == 3 and env.unwrapped.dataset.seed == 7
        assert info["original_image_size"] == (512, 512) and obs["image"].any()
    finally:
        env.close()
