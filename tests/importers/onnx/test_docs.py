"""docs/onnx.md lists exactly the operators the code supports (regenerate with the command in the doc)."""

from pathlib import Path

from hubkit.importers.onnx.optable import update_doc

DOC = Path(__file__).resolve().parents[3] / "docs" / "onnx.md"


def test_operator_tables_match_the_code():
    text = DOC.read_text(encoding="utf-8")
    assert "<!-- BEGIN import-ops -->" in text and "<!-- BEGIN export-ops -->" in text
    assert update_doc(text) == text, "run: python -m hubkit.importers.onnx.optable docs/onnx.md"
