"""Every example in README.md and docs/*.md runs as written (see tests/doc_examples.py for the conventions).

Each file runs in a subprocess of its own (no state leaks between docs; a hung example is stopped by a
timeout), from a fresh temporary directory, against a registry served on 127.0.0.1 wherever an example
names ``https://models.example.org``. New docs are picked up without touching this file. Docs whose
examples need objects from a test (``DEDICATED``) are run by that test instead, with extra checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_examples import expected_prints, python_blocks
from tests.test_docs_hub import example_registry  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
DEDICATED = {
    "README.md": "tests/test_docs_hub.py",
    "docs/hub.md": "tests/test_docs_hub.py",
    "docs/common_signatures.md": "tests/test_docs_hub.py",
    "docs/modules.md": "tests/module/test_docs.py",
    "docs/training.md": "tests/test_docs_training.py",
}
LINKED = ("scripts", "tests", "docs", "registry", "hubkit")
DOCS = sorted(p.relative_to(ROOT).as_posix() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def test_dedicated_doc_tests_exist():
    for doc, test in DEDICATED.items():
        source = (ROOT / test).read_text(encoding="utf-8") if (ROOT / test).is_file() else ""
        assert Path(doc).name in source, f"{doc} is left to {test}, which does not run it"


@pytest.mark.parametrize("doc", [d for d in DOCS if d not in DEDICATED])
def test_doc_examples_run(doc, example_registry, tmp_path):  # noqa: F811
    text = (ROOT / doc).read_text(encoding="utf-8")
    if not python_blocks(text):
        pytest.skip(f"{doc} has no python examples to run")
    work = tmp_path / "work"
    work.mkdir()
    for name in LINKED:
        os.symlink(ROOT / name, work / name)
    env = {**os.environ, "HUBKIT_DOCS_REGISTRY": example_registry, "HUBKIT_CACHE_DIR": str(tmp_path / "cache"),
           "HUBKIT_PROGRESS": "0", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("HUBKIT_OFFLINE", None)
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "doc_examples.py"), str(ROOT / doc)], cwd=work,
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{doc}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


def test_block_selection_and_print_checks():
    text = (
        "```python\nx = 1\n```\n"
        "<!-- doc-test: skip -->\n```python\nraise SystemExit\n```\n"
        "```sh\nrm -rf /\n```\n"
        "```python\nprint(x)  # 1\n```\n"
    )
    assert [code for _, code in python_blocks(text)] == ["x = 1\n", "print(x)  # 1\n"]
    assert [line for line, _ in python_blocks(text)] == [2, 12]
    assert python_blocks("<!-- doc-test: skip-file -->\n```python\n1/0\n```\n") == []
    assert expected_prints("print(a)  # 3\nprint(b)  # [1, 2]\n") == ["3", "[1, 2]"]
    assert expected_prints("print(a)  # 3\nprint(b)\n") is None  # not every print says what it prints
    assert expected_prints("y = 2  # a comment\n") is None
