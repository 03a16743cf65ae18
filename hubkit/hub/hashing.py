"""Streaming file hashes: memory stays flat whatever the file size."""

from __future__ import annotations

import hashlib
import zlib

from hubkit.format.bounded_io import open_regular

__all__ = ["file_checksums", "sha256_file"]

_CHUNK = 1 << 20


def file_checksums(path: str, sha256: bool = True, crc32: bool = False) -> tuple[str | None, int | None, int]:
    """Returns the checksums asked for and the size of a file, read once in 1 MiB chunks.

    Args:
        path: The file to hash.
        sha256: Compute the sha256.
        crc32: Compute the CRC-32.

    Returns:
        ``(lowercase_hex_sha256 or None, crc32 or None, size)``; ``None`` for a checksum not asked for.

    Raises:
        OSError: The file cannot be read, or is not a regular file (a FIFO or device is never read: it
            could block or never end).
    """
    hasher = hashlib.sha256() if sha256 else None
    crc = 0
    size = 0
    with open_regular(path, error=OSError) as f:
        while chunk := f.read(_CHUNK):
            if hasher is not None:
                hasher.update(chunk)
            if crc32:
                crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return (hasher.hexdigest() if hasher is not None else None), (crc if crc32 else None), size


def sha256_file(path: str) -> tuple[str, int]:
    """Returns the sha256 hex digest and the size in bytes of a file, read in 1 MiB chunks.

    Args:
        path: The file to hash.

    Returns:
        ``(lowercase_hex_digest, size)``.

    Raises:
        OSError: The file cannot be read.
    """
    digest, _, size = file_checksums(path)
    assert digest is not None  # asked for; narrows the type for mypy
    return digest, size
