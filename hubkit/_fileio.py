"""Writing files so that a crash never leaves a half-written one under its final name.

One mechanism for every layer that publishes files in place (registry indexes and archives,
checkpoints): write a temp file next to the target, flush and fsync it, then rename (or link) it,
and remove the temp file whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import BinaryIO

__all__ = ["TEMP_INFIX", "atomic_write", "synced_temp_file"]

TEMP_INFIX = ".tmp-"  # temp files are "<final>.tmp-<hex>": servers hide them, listings skip them


@contextlib.contextmanager
def synced_temp_file(final: str, write: Callable[[BinaryIO], object]) -> Iterator[str]:
    """Writes a synced temp file next to ``final`` with ``write(f)`` and yields its path.

    The caller renames or links the temp file into place inside the ``with`` block; whatever is
    left at the temp path afterwards (an error, or a link instead of a rename) is removed.
    """
    temp = f"{final}{TEMP_INFIX}{uuid.uuid4().hex}"
    try:
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        yield temp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def atomic_write(final: str, data: bytes) -> None:
    """Replaces ``final`` with ``data`` atomically: readers see the old file or the new one, never half.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
    >>> atomic_write(path, b"{}"); open(path, "rb").read(), sorted(os.listdir(os.path.dirname(path)))
    (b'{}', ['state.json'])
    """
    with synced_temp_file(final, lambda f: f.write(data)) as temp:
        os.replace(temp, final)
