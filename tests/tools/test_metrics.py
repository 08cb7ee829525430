"""``read_metrics``: a run's JSON-lines log survives a crash mid-write, and every skipped line is named."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mgpo_tools.metrics import MetricsWarning, read_metrics

ROWS = [{"step": 0, "loss": 1.5}, {"step": 1, "loss": 1.25}, {"step": 2, "loss": 1.0}]


def read_with_warnings(path: Path) -> tuple[list[dict], list[str]]:
    """The rows and the messages of the warnings raised while reading them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = read_metrics(path)
    assert all(issubclass(w.category, MetricsWarning) for w in caught)
    return rows, [str(w.message) for w in caught]


def test_a_torn_last_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "loss": 1.5}\n{"step": 1, "loss": 1.25}\n{"step": 2, "loss": 1.0}\n{"step": 3, "lo')
    rows, messages = read_with_warnings(path)
    assert rows == ROWS
    assert len(messages) == 1 and messages[0].startswith(f"{path}:4: skipped an unreadable metrics line (no newline: torn by a crash?)")


def test_a_torn_multibyte_character_is_one_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 0, "loss": 1.5}\n{"note": "caf\xc3')  # the crash fell inside "é"
    rows, messages = read_with_warnings(path)
    assert rows == ROWS[:1] and len(messages) == 1 and f"{path}:2:" in messages[0]


def test_a_corrupt_middle_line_is_skipped_and_the_rest_kept(tmp_path):
    # A run resumed after a crash appends behind the torn line: the two are glued together.
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "loss": 1.5}\n{"step": 1, "lo{"step": 1, "loss": 1.25}\n{"step": 2, "loss": 1.0}\n')
    rows, messages = read_with_warnings(path)
    assert rows == [ROWS[0], ROWS[2]]
    assert len(messages) == 1 and messages[0].startswith(f"{path}:2: skipped an unreadable metrics line: ")
    assert "torn by a crash" not in messages[0]  # it ends in a newline: corrupt, not the last write


def test_blank_lines_are_skipped_silently(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('\n{"step": 0, "loss": 1.5}\n   \n\n{"step": 1, "loss": 1.25}\r\n\t\n{"step": 2, "loss": 1.0}\n\n')
    assert read_with_warnings(path) == (ROWS, [])


@pytest.mark.parametrize("line, kind", [("[1, 2]", "an array"), ("3", "a number"), ('"text"', "a string"), ("null", "null"), ("true", "a boolean")])
def test_json_that_is_not_an_object_is_skipped_with_a_warning(tmp_path, line, kind):
    path = tmp_path / "metrics.jsonl"
    path.write_text(f'{{"step": 0, "loss": 1.5}}\n{line}\n{{"step": 1, "loss": 1.25}}\n')
    rows, messages = read_with_warnings(path)
    assert rows == ROWS[:2]
    assert messages == [f"{path}:2: skipped a metrics line that is {kind}, not a JSON object"]


def test_a_missing_file_is_an_error_unless_it_may_be_missing(tmp_path):
    path = tmp_path / "no-such-run" / "metrics.jsonl"
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        read_metrics(path)
    assert read_metrics(path, missing_ok=True) == []


def test_an_empty_file_has_no_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("")
    assert read_with_warnings(path) == ([], [])


def test_the_warning_points_at_the_caller(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("{")
    with pytest.warns(MetricsWarning) as caught:
        read_metrics(str(path))  # a str path is accepted too
    assert caught[0].filename == __file__
