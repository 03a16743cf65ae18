"""`make demo` runs, is seeded (two runs print the same numbers), and ends by saying how to browse the registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_demo(directory: Path) -> str:
    env = {**os.environ, "HUBKIT_DEMO_DIR": str(directory), "HUBKIT_CACHE_DIR": str(directory / "cache"),
           "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    result = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_demo_is_seeded_and_ends_with_how_to_browse(tmp_path):
    first, second = run_demo(tmp_path / "a"), run_demo(tmp_path / "b")

    def strip(text: str, directory: Path) -> str:
        # the demo prints some paths relative to the checkout, which may sit anywhere (CI clones elsewhere)
        text = text.replace(os.path.relpath(directory, ROOT), "DIR")
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text).replace(str(directory), "DIR")

    assert strip(first, tmp_path / "a") == strip(second, tmp_path / "b")
    assert "'the cat sat on the mat'" in first and "cosine similarity" in first
    lines = first.rstrip().splitlines()
    assert any("hubkit registry serve" in line and line.rstrip().endswith("(then open http://127.0.0.1:8000/)")
               for line in lines[-3:])
    assert "['hidden/bias', 'hidden/kernel', 'logits/bias', 'logits/kernel']" in first
