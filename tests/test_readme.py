"""The README's Python example runs as written and shows the memorization it describes."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, str(README), "exec"), {})
    test_acc, mem_noisy = map(float, capsys.readouterr().out.split()[-2:])
    assert 0.3 < test_acc <= 1.0 and 0.0 <= mem_noisy <= 1.0


def test_readme_names_the_two_quickstart_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
