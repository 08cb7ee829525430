"""The run's unreadable training samples: found before the first step or when drawn, skipped or fatal.

Real datasets hold bad files (a truncated JPEG, a file that is not an image). A
multi-day run must not die at hour 7 on one of them, nor train on quietly less
data than it thinks. :class:`BadSamples` keeps the set of bad sample indices the
run has met and applies the policy:

* a row the dataset loader could not use (a missing image file) is dropped by the
  loader itself under ``"skip"`` (``on_error="skip"``) and listed here with
  ``"index": null`` and ``"found": "loading"``;
* every bad sample is listed, with its reason and where it was found, in
  ``output_dir/bad_samples.jsonl`` (one JSON object a line), which a resumed run
  reads back; the dataset itself is never touched;
* ``on_bad_sample="skip"``: every step that draws it plays the next readable sample in
  its place (the trainer counts these in the metrics), so each process keeps its share
  of the batch; ``"error"``: the first one stops the run;
* more than ``max_bad_fraction`` of the dataset bad stops the run
  (:class:`~mgpo_agents.faults.TooManyBadSamples`), naming the file that lists them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .faults import TooManyBadSamples

BAD_SAMPLES_FILE = "bad_samples.jsonl"


class BadSamples:
    """The set of unreadable sample indices, their log file and the policy (see the module docstring).

    Args:
        path: the JSON-lines file listing them (read back if it exists); None keeps them in memory only.
        dataset_size: the training set's length, for the share.
        policy: ``"skip"`` or ``"error"``.
        max_fraction: the largest share of bad samples the run accepts.
    """

    def __init__(self, path: Optional[Path], dataset_size: int, *, policy: str = "skip", max_fraction: float = 0.2) -> None:
        if policy not in ("skip", "error"):
            raise ValueError(f"on_bad_sample={policy!r}; choose 'skip' or 'error'")
        self.path = Path(path) if path is not None else None
        self.dataset_size = dataset_size
        self.policy = policy
        self.max_fraction = max_fraction
        self.reasons: dict[int, str] = {}  # by index in the dataset
        self.unloadable: dict[str, str] = {}  # rows the loader dropped, by where they are (file and line)
        if self.path is not None and self.path.exists():
            from mgpo_tools.metrics import read_metrics  # the same tolerant JSON-lines reader (a torn last line is skipped)

            for row in read_metrics(self.path):
                if row.get("index") is None:
                    self.unloadable.setdefault(str(row.get("where")), str(row.get("reason", "")))
                else:
                    self.reasons.setdefault(int(row["index"]), str(row.get("reason", "")))

    def __contains__(self, index: int) -> bool:
        return index in self.reasons

    def __len__(self) -> int:
        return len(self.reasons) + len(self.unloadable)

    def add_unloadable(self, where: str, reason: str, *, write: bool = True) -> None:
        """Record a row the loader dropped (it is not in the dataset); :meth:`check` counts it."""
        if where not in self.unloadable:
            self.unloadable[where] = reason
            self._write({"index": None, "where": where, "reason": reason, "found": "loading"}, write)

    def add(self, index: int, sample_id: str, reason: str, *, found: str, write: bool = True) -> None:
        """Record a bad sample (once), then apply the policy: raise under ``"error"`` or past the allowed share."""
        if index not in self.reasons:
            self.reasons[index] = reason
            self._write({"index": index, "sample_id": sample_id, "reason": reason, "found": found}, write)
        if self.policy == "error":
            raise TooManyBadSamples(
                f"sample {sample_id!r} (index {index}) cannot be used: {reason}. The dataset was not changed; fix or "
                "remove the file, or pass --on-bad-sample skip to leave such samples out"
            )
        self.check()

    def _write(self, row: dict, write: bool) -> None:
        if write and self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def check(self) -> None:
        """Raise :class:`TooManyBadSamples` when more than the allowed share of the data is bad (dropped rows included)."""
        total = self.dataset_size + len(self.unloadable)
        share = len(self) / max(total, 1)
        if share > self.max_fraction:
            where = f"; they are listed in {self.path}" if self.path is not None else ""
            raise TooManyBadSamples(
                f"{len(self)} of {total} training samples ({share:.1%}) are unreadable, more than "
                f"--max-bad-fraction {self.max_fraction:g} allows{where}. The dataset was not changed; fix the files "
                "(mgpo data SPEC --decode lists them all) or raise --max-bad-fraction"
            )


__all__ = ["BadSamples", "BAD_SAMPLES_FILE"]
