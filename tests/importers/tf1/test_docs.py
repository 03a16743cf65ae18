"""docs/tf1_import.md stays true: its op list is the code's, its fine-tuning example runs."""

from __future__ import annotations

import os
import re

from hubkit.importers.tf1.translate import supported_ops_markdown

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "tf1_import.md")
ROOT = os.path.abspath(os.path.join(os.path.dirname(DOC), ".."))


def _doc() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def test_the_supported_op_list_is_generated_from_the_code():
    match = re.search(r"<!-- tf1-ops:begin[^>]*-->\n(.*?)\n<!-- tf1-ops:end -->", _doc(), re.S)
    assert match, "docs/tf1_import.md lost its generated op list markers"
    assert match.group(1) == supported_ops_markdown(), (
        "docs/tf1_import.md lists other ops than the importer translates; paste the output of "
        "hubkit.importers.tf1.translate.supported_ops_markdown() between the markers"
    )


def test_the_fine_tuning_example_runs(monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", _doc(), re.S)
    example = next(b for b in blocks if "minimize" in b)
    monkeypatch.chdir(ROOT)
    exec(compile(example, "docs/tf1_import.md", "exec"), {})
