"""The operator tables of docs/onnx.md, generated from the translator and emitter tables.

``python -m hubkit.importers.onnx.optable docs/onnx.md`` rewrites the tables between their markers;
``tests/importers/onnx/test_docs.py`` checks that the committed doc matches the code.
"""

from __future__ import annotations

import re
import sys

__all__ = ["export_table", "import_table", "update_doc"]

_WIDTH = 8  # op names per row


def _rows(names: list[str]) -> str:
    lines = []
    for i in range(0, len(names), _WIDTH):
        lines.append("| " + " | ".join(f"`{n}`" for n in names[i:i + _WIDTH]) + " |")
    head = "| " + " | ".join([" "] * min(_WIDTH, len(names))) + " |"
    rule = "|" + "---|" * min(_WIDTH, len(names))
    return "\n".join([head, rule, *lines])


def import_table() -> str:
    """The ONNX op types the importer translates (default domain), as a Markdown table."""
    from hubkit.importers.onnx.translate import SUPPORTED_OPS

    return _rows(sorted(SUPPORTED_OPS))


def export_table() -> str:
    """The hubkit ops the exporter writes as ONNX, as a Markdown table."""
    from hubkit.exporters.onnx_emit import EMITTERS

    return _rows(sorted([*EMITTERS, "Const", "Placeholder", "Variable"]))


def update_doc(text: str) -> str:
    """``text`` with the tables between ``<!-- BEGIN x -->`` and ``<!-- END x -->`` regenerated."""
    for key, table in (("import-ops", import_table()), ("export-ops", export_table())):
        pattern = re.compile(rf"(<!-- BEGIN {key} -->\n)(?:.*?\n)?(<!-- END {key} -->)", re.S)
        text = pattern.sub(lambda m: f"{m.group(1)}{table}\n{m.group(2)}", text)  # noqa: B023 (called at once)
    return text


if __name__ == "__main__":
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        old = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(update_doc(old))
