"""Read a run's JSON-lines logs (``metrics.jsonl``, ``evals.jsonl``): one JSON object per line.

The trainer appends a line per step and may be killed at any moment, so the last
line of a file can be torn (half written, no newline), and a run resumed after such
a crash appends behind the torn part, leaving a corrupt line in the middle. Losing
one step of curves is better than losing the report or the plot, so
:func:`read_metrics` skips what it cannot use and says so, naming the file and line:

* a line that is not JSON (torn or corrupt; also bytes that are not UTF-8): skipped
  with a :class:`MetricsWarning`, which adds "no newline: torn by a crash?" when it
  is the unterminated last line;
* JSON that is not an object (``[1, 2]``, ``3``, ``null``): skipped with a
  :class:`MetricsWarning`, since a row is a mapping of metric names to values and
  callers rely on ``row.get``;
* a blank or whitespace-only line: skipped silently (a newline that ends a torn
  line, or a file edited by hand, holds no data and nothing went wrong);
* a missing file: :class:`FileNotFoundError`, because a mistyped path must not look
  like an empty run; ``missing_ok=True`` returns ``[]`` for logs that are optional
  (the report of a run that has only episodes).

Example:
    >>> import tempfile, warnings
    >>> from pathlib import Path
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "metrics.jsonl"
    >>> _ = path.write_text('{"step": 0, "loss": 1.5}\\n\\n{"step": 1, "loss": 1.2}\\n{"step": 2, "lo')
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     rows = read_metrics(path)
    >>> rows
    [{'step': 0, 'loss': 1.5}, {'step': 1, 'loss': 1.2}]
    >>> [str(w.message).split(": ", 1)[1] for w in caught]  # doctest: +ELLIPSIS
    ['skipped an unreadable metrics line (no newline: torn by a crash?): ...']
    >>> read_metrics(Path(folder.name) / "evals.jsonl", missing_ok=True)
    []
    >>> folder.cleanup()
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Union


_JSON_TYPES: dict[type, str] = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


class MetricsWarning(UserWarning):
    """A line of a metrics file was skipped (torn by a crash, corrupt, or not a JSON object)."""


def read_metrics(path: Union[str, os.PathLike[str]], *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of the JSON-lines file ``path``, in file order (see the module for what is skipped).

    Raises:
        FileNotFoundError: ``path`` does not exist and ``missing_ok`` is False.
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    with open(path, "rb") as f:  # bytes: a torn multi-byte character is one bad line, not a failed read
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
                torn = "" if raw.endswith(b"\n") else " (no newline: torn by a crash?)"
                warnings.warn(f"{path}:{number}: skipped an unreadable metrics line{torn}: {error}", MetricsWarning, stacklevel=2)
                continue
            if not isinstance(row, dict):
                warnings.warn(f"{path}:{number}: skipped a metrics line that is {_JSON_TYPES[type(row)]}, not a JSON object", MetricsWarning, stacklevel=2)
                continue
            rows.append(row)
    return rows
