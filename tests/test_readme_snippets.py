"""Run every ```python block of the README's "Use it with other algorithms" section.

Source: the section ``## Use it with other algorithms`` of ``README.md`` (up to
the next ``## `` heading). A block whose fence says more than ``python`` (for example
```` ```python skip ````) is shown to readers but not run: it needs a real model.
Blocks of one file run in order in one namespace, as a reader would paste them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Use it with other algorithms"
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def section_of(text: str, heading: str) -> str:
    """The text from ``heading`` to the next heading of the same level (``""`` if absent)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.rstrip() == heading:
            level = heading.split(" ")[0] + " "
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(level)), len(lines))
            return "".join(lines[i:end])
    return ""


def python_blocks(markdown: str) -> list[str]:
    """Bodies of fences opened by exactly ```` ```python ```` (not ```` ```python skip ````)."""
    return [match.group(1) for match in _BLOCK.finditer(markdown)]


def sources() -> list[tuple[str, str]]:
    readme = ROOT / "README.md"
    return [("README.md", section_of(readme.read_text(encoding="utf-8"), SECTION))]


def test_helpers_pick_the_right_blocks():
    text = "# T\n## Use it with other algorithms\nx\n```python\na = 1\n```\n```python skip\nb = 2\n```\n### sub\n```python\nc = 3\n```\n## Next\n```python\nd = 4\n```\n"
    section = section_of(text, SECTION)
    assert section.startswith(SECTION) and "## Next" not in section and "### sub" in section
    assert python_blocks(section) == ["a = 1\n", "c = 3\n"]
    assert section_of(text, "## Missing") == ""


def test_docs_have_the_section_and_runnable_blocks():
    doc = dict(sources())["README.md"]
    assert doc.startswith(SECTION)
    assert len(python_blocks(doc)) >= 5
    assert "```python skip" in doc  # the GRPOTrainer recipe needs a real model


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _ in sources()])
def test_snippets_run(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a snippet that writes files writes them here
    markdown = dict(sources())[name]
    namespace: dict = {"__name__": "__snippet__"}
    for number, block in enumerate(python_blocks(markdown), start=1):
        code = compile(block, f"{name} python block {number}", "exec")
        exec(code, namespace)
    out = capsys.readouterr().out
    if name == "README.md":
        # A few of the printed values the docs promise in their comments.
        assert "(2, 224, 224, 3) [0 0]" in out
        assert "[1.0, 0.0]" in out
        assert "((1000, 750, 2000, 1500), None)" in out
        assert "(504, 504)" in out and "(448, 448) Region (0, 0, 256, 256)" in out
