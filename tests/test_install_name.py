"""Every install instruction names the distribution hubkit-ml: `hubkit` on the package index is someone else's."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# "pip install hubkit", "pip install 'hubkit[numba]'", "hubkit[onnx]" ... but not hubkit-ml.
WRONG = re.compile(r"""pip3?\s+install\s+(?:-\S+\s+)*['"]?hubkit(?![-\w])|['"\s`(]hubkit\[[a-z,]+\]""")
SUFFIXES = {".py", ".md", ".html", ".toml", ".conf", ".txt", ".cfg", ".rst", ".sh", ""}


def test_no_instruction_installs_the_wrong_package():
    wrong = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in {".venv", ".git", ".demo", "build", "dist"} or not path.is_file() or any(
                part.endswith(".egg-info") or part.startswith(".") for part in relative.parts):
            continue
        if path.suffix not in SUFFIXES or path == Path(__file__).resolve() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        wrong += [f"{relative}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}" for m in WRONG.finditer(text)]
    assert not wrong, f"install instructions naming 'hubkit' instead of 'hubkit-ml': {wrong}"


def test_the_pattern_catches_the_old_instructions():
    for text in ("pip install hubkit", "pip install 'hubkit[numba]'", "`pip install -U hubkit`", " hubkit[onnx]"):
        assert WRONG.search(text), text
    for text in ("pip install hubkit-ml", "pip install 'hubkit-ml[numba]'", "import hubkit", "hubkit info"):
        assert not WRONG.search(text), text
