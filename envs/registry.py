"""Dataset specs: an explicit registry from a name to its loader.

``gym.make("mgpo/HighResVQA-v0", dataset=SPEC)`` accepts:

* ``"synthetic"`` (the default): the built-in generated task, no download;
* ``"vstar:DIR"``: V* Bench in its published folder layout;
* ``"mme-realworld:JSON_FILE"``: MME-RealWorld's JSON list (images relative to the file);
* ``"hr-bench:TSV_FILE"``: HR-Bench's TSV with base64 images;
* ``"jsonl:FILE"``: one sample a line (see :mod:`mgpo_datasets.jsonl_dataset`);
* ``"hf:DIR"``: a Hugging Face dataset saved with ``save_to_disk``;
* a ``datasets.Dataset`` object, or any sequence of ``Sample``;
* any name added with :func:`register_dataset`.

The built-in names are registered in :mod:`mgpo_datasets` (its ``__init__``), by
plain imports: nothing is looked up by an import string.

>>> from mgpo_datasets import register_dataset, resolve_dataset
>>> from mgpo_datasets.synthetic import SyntheticTask
>>> register_dataset("tiny-synthetic", lambda argument, **kw: SyntheticTask(num_samples=2, canvas_size=256, **kw),
...                  needs_path=False, overwrite=True)
>>> len(resolve_dataset("tiny-synthetic"))
2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .sample import Sample

Loader = Callable[..., Sequence[Sample]]  # loader(argument, **dataset_kwargs) -> samples


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: ``loader(argument, **dataset_kwargs)``, where ``argument`` is the text after the colon."""

    name: str
    loader: Loader
    needs_path: bool = True
    accepts_on_error: bool = False


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str, loader: Loader, *, needs_path: bool = True, accepts_on_error: bool = False, overwrite: bool = False
) -> None:
    """Make ``dataset="NAME"`` (or ``"NAME:ARGUMENT"`` when ``needs_path``) load through ``loader``.

    ``accepts_on_error`` says that the loader takes ``on_error="raise" | "skip"`` (``mgpo data`` uses it
    to list every bad row). Registering a taken name raises unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a dataset name must be a non-empty string without ':', got {name!r}")
    if not callable(loader):
        raise TypeError(f"the loader for {name!r} must be callable, got {type(loader).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = DatasetEntry(name, loader, needs_path, accepts_on_error)


def registered_datasets() -> dict[str, DatasetEntry]:
    """The registered datasets by name (a copy)."""
    return dict(_REGISTRY)


def dataset_entry(spec: str) -> DatasetEntry:
    """The entry a spec string names (``"vstar:/data"`` -> the ``vstar`` entry)."""
    name = spec.partition(":")[0]
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown dataset spec {spec!r}; use one of: "
            + ", ".join(f"'{key}:...'" if entry.needs_path else f"'{key}'" for key, entry in _REGISTRY.items())
        )
    return _REGISTRY[name]


def resolve_dataset(spec: Any = "synthetic", **dataset_kwargs: Any) -> Sequence[Sample]:
    """Load the dataset ``spec`` names (see the module docstring)."""
    if isinstance(spec, str):
        entry = dataset_entry(spec)
        argument = spec.partition(":")[2]
        if entry.needs_path and not argument:
            raise ValueError(f"dataset spec {spec!r} needs a path after the colon, e.g. '{entry.name}:/data/{entry.name}'")
        return entry.loader(argument, **dataset_kwargs)
    if type(spec).__module__.startswith("datasets."):
        return dataset_entry("hf").loader(spec, **dataset_kwargs)
    if dataset_kwargs:
        raise ValueError(f"dataset_kwargs {sorted(dataset_kwargs)} only apply to a dataset spec string, not to a {type(spec).__name__}")
    if not hasattr(spec, "__len__") or not hasattr(spec, "__getitem__"):
        raise TypeError(f"dataset must be a spec string, a datasets.Dataset or a sequence of Sample, got {type(spec).__name__}")
    if len(spec) == 0:
        raise ValueError("the dataset is empty")
    if not isinstance(spec[0], Sample):
        raise TypeError(f"a dataset sequence must hold mgpo_datasets.Sample objects, got {type(spec[0]).__name__} at index 0")
    return spec


__all__ = ["DatasetEntry", "register_dataset", "registered_datasets", "dataset_entry", "resolve_dataset"]
