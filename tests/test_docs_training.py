"""The Python examples of docs/training.md run, in order, on generated data, and print what the comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import hubkit as hk

DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"


def expected_prints(block: str) -> list[str]:
    """The comment after each ``print(...)`` line: what that line prints."""
    return [m.group(1).strip() for line in block.splitlines() if line.lstrip().startswith("print(")
            for m in [re.search(r"#\s*(.*)$", line)] if m]


def test_training_doc_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_training"}
    with hk.Graph().as_default():
        for block in blocks:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, str(DOC), "exec"), namespace)  # the docs are ours: running them is the test
            expected = expected_prints(block)
            if expected:  # blocks without print() may still print (model.summary())
                assert out.getvalue().splitlines() == expected, block
