"""Streaming file hashes: memory stays flat whatever the file size."""

from __future__ import annotations

import hashlib

__all__ = ["sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str) -> tuple[str, int]:
    """Returns the sha256 hex digest and the size in bytes of a file, read in 1 MiB chunks.

    Args:
        path: The file to hash.

    Returns:
        ``(lowercase_hex_digest, size)``.

    Raises:
        OSError: The file cannot be read.
    """
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size
