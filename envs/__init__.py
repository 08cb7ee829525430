"""Datasets and tasks for the environment (the folder ``envs/``, imported as ``mgpo_datasets``).

Every dataset is a sequence of :class:`Sample` (one question about one image).
This package holds the built-in synthetic task, the loaders of the real
benchmarks (V* Bench, MME-RealWorld, HR-Bench) and of generic JSONL and Hugging
Face datasets, safe image-file reading, and the registry that turns a spec such
as ``"vstar:/data/vstar_bench"`` into samples. It imports nothing of the
environment or the trainer; :mod:`mgpo_env` builds on it.
"""

from . import hf_dataset, hr_bench, jsonl_dataset, mme_realworld, synthetic, vstar
from .image_files import ImageLoadError
from .registry import DatasetEntry, dataset_entry, register_dataset, registered_datasets, resolve_dataset
from .sample import DataError, Sample

register_dataset("synthetic", synthetic.load_synthetic, needs_path=False)
register_dataset("vstar", vstar.load_vstar, accepts_on_error=True)
register_dataset("mme-realworld", mme_realworld.load_mme_realworld, accepts_on_error=True)
register_dataset("hr-bench", hr_bench.load_hr_bench, accepts_on_error=True)
register_dataset("jsonl", jsonl_dataset.load_jsonl, accepts_on_error=True)
register_dataset("hf", hf_dataset.load_hf_dataset, accepts_on_error=True)

__all__ = [
    "DataError",
    "DatasetEntry",
    "ImageLoadError",
    "Sample",
    "dataset_entry",
    "register_dataset",
    "registered_datasets",
    "resolve_dataset",
]
