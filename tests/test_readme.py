"""The README's environment example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_environment_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", section("The environment: `mgpo/HighResVQA-v0`"), re.DOTALL)
    assert blocks, "the README lost its environment example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert "True (0, 0, 1024, 1024)" in out
    assert out[-1].split()[0] in ("0.0", "1.0")


def test_setup_commands_are_the_makefile_targets():
    commands = re.findall(r"^make (\w+)", section("Set up and run"), re.MULTILINE)
    assert commands == ["run", "test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci
