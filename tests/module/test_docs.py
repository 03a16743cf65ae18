"""The Python examples of docs/modules.md run, in order, and print what the comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "modules.md"


def test_modules_doc_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, str(DOC), "exec"), namespace)  # the docs are ours: running them is the test
        printed = out.getvalue().splitlines()
        expected = [m.group(1).strip() for line in block.splitlines() if line.startswith("print(")
                    for m in [re.search(r"#\s*(.*)$", line)] if m]
        assert printed == expected, block
