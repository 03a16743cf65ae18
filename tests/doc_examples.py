"""Runs the ```python examples of one Markdown file as a reader would: ``python tests/doc_examples.py DOC``.

Conventions for every README.md and docs/*.md (tests/test_docs_examples.py runs each file through this):

- Every block fenced as ```` ```python ```` runs, in order, in one namespace, with the working directory a
  fresh temporary directory (relative paths written by the examples land there; ``scripts``, ``tests``,
  ``docs`` and ``registry`` of the repository are linked into it, so examples can name them as from a clone).
- ``https://models.example.org`` (the registry a reader hosts) is replaced by the URL in
  ``HUBKIT_DOCS_REGISTRY``: a registry on 127.0.0.1 with ``acme/text-embedding`` versions 1 and 2 (128-d)
  and ``acme/image-features`` 1 (64x64 images).
- When every ``print(...)`` line of a block ends with a ``# comment``, the block must print exactly those
  comments, one line each: the comment is what the line prints.
- ``<!-- doc-test: skip -->`` on the line before a fence skips that block (say why in the text);
  ``<!-- doc-test: skip-file -->`` anywhere skips the whole file. Other fences (```` ``` ````, ```` ```sh ````)
  never run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import traceback
from pathlib import Path

EXAMPLE_BASE = "https://models.example.org"
SKIP_BLOCK = "<!-- doc-test: skip -->"
SKIP_FILE = "<!-- doc-test: skip-file -->"
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block not marked to be skipped."""
    if SKIP_FILE in text:
        return []
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        if before == SKIP_BLOCK:
            continue
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def expected_prints(block: str) -> list[str] | None:
    """The comment of each ``print(`` line, or ``None`` if some print line has none (nothing to check)."""
    lines = [line for line in block.splitlines() if line.lstrip().startswith("print(")]
    comments = [re.search(r"\)\s*#\s?(.*)$", line) for line in lines]
    if not lines or not all(comments):
        return None
    return [m.group(1).strip() for m in comments if m]


def run_file(path: Path, base_url: str | None) -> int:
    text = path.read_text(encoding="utf-8")
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for line, block in python_blocks(text):
        code = block.replace(EXAMPLE_BASE, base_url) if base_url else block
        # Line numbers of errors point into the Markdown file.
        compiled = compile("\n" * (line - 1) + code, str(path), "exec")
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compiled, namespace)  # our own docs: running them is the test
        except BaseException:
            sys.stdout.write(out.getvalue())
            print(f"\n{path}:{line}: the example starting here failed:", file=sys.stderr)
            traceback.print_exc()
            return 1
        sys.stdout.write(out.getvalue())
        expected = expected_prints(block)
        printed = [p.rstrip() for p in out.getvalue().splitlines()]
        if expected is not None and printed != expected:
            print(f"\n{path}:{line}: the example prints\n  {printed}\nbut its comments say\n  {expected}",
                  file=sys.stderr)
            return 1
    return 0


def main() -> int:
    path = Path(sys.argv[1]).resolve()
    return run_file(path, os.environ.get("HUBKIT_DOCS_REGISTRY"))


if __name__ == "__main__":
    sys.exit(main())
