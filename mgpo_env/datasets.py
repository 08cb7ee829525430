"""Turn a dataset *spec* into a sequence of :class:`~mgpo_env.sample.Sample`.

``gym.make("mgpo/HighResVQA-v0", dataset=SPEC)`` accepts:

* ``"synthetic"`` (the default): the built-in generated task, no download;
* ``"grounding"``: generated "where is the red circle?" questions (generic grounding practice);
* ``"vstar:DIR"``: V* Bench in its published folder layout;
* ``"mme-realworld:JSON_FILE"``: MME-RealWorld's JSON list (images relative to the file);
* ``"hr-bench:TSV_FILE"``: HR-Bench's TSV with base64 images;
* ``"jsonl:FILE"``: one sample a line (see :mod:`mgpo_envs.jsonl_dataset`);
* ``"hf:DIR"``: a Hugging Face dataset saved with ``save_to_disk``;
* a ``datasets.Dataset`` object, or any sequence of ``Sample``.

Loaders live in :mod:`mgpo_envs` and are imported only when used, so the
environment needs none of their dependencies unless asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

from .sample import Sample

# spec prefix -> "module:function"; the function takes (argument, **dataset_kwargs).
DATASET_LOADERS: dict[str, str] = {
    "synthetic": "mgpo_envs.synthetic:load_synthetic",
    "grounding": "mgpo_envs.grounding_task:load_grounding",
    "vstar": "mgpo_envs.vstar:load_vstar",
    "mme-realworld": "mgpo_envs.mme_realworld:load_mme_realworld",
    "hr-bench": "mgpo_envs.hr_bench:load_hr_bench",
    "jsonl": "mgpo_envs.jsonl_dataset:load_jsonl",
    "hf": "mgpo_envs.hf_dataset:load_hf_dataset",
}

GENERATED = ("synthetic", "grounding")  # built-in generators: no path after the name


def _loader(name: str) -> Callable[..., Sequence[Sample]]:
    module_name, function_name = DATASET_LOADERS[name].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def resolve_dataset(spec: Any = "synthetic", **dataset_kwargs: Any) -> Sequence[Sample]:
    """Load the dataset ``spec`` names (see the module docstring)."""
    if isinstance(spec, str):
        name, _, argument = spec.partition(":")
        if name not in DATASET_LOADERS:
            raise ValueError(
                f"unknown dataset spec {spec!r}; use one of: "
                + ", ".join(f"'{key}:...'" if key not in GENERATED else f"'{key}'" for key in DATASET_LOADERS)
            )
        if name not in GENERATED and not argument:
            raise ValueError(f"dataset spec {spec!r} needs a path after the colon, e.g. '{name}:/data/{name}'")
        return _loader(name)(argument, **dataset_kwargs)
    if type(spec).__module__.startswith("datasets."):
        return _loader("hf")(spec, **dataset_kwargs)
    if dataset_kwargs:
        raise ValueError(f"dataset_kwargs {sorted(dataset_kwargs)} only apply to a dataset spec string, not to a {type(spec).__name__}")
    if not hasattr(spec, "__len__") or not hasattr(spec, "__getitem__"):
        raise TypeError(f"dataset must be a spec string, a datasets.Dataset or a sequence of Sample, got {type(spec).__name__}")
    if len(spec) == 0:
        raise ValueError("the dataset is empty")
    if not isinstance(spec[0], Sample):
        raise TypeError(f"a dataset sequence must hold mgpo_env.Sample objects, got {type(spec[0]).__name__} at index 0")
    return spec
