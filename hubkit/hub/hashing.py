"""Streaming file hashes: memory stays flat whatever the file size."""

from __future__ import annotations

import hashlib
import threading
import zlib
from typing import Any

from hubkit.format.bounded_io import open_regular

__all__ = ["BackgroundHasher", "file_checksums", "sha256_file"]

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


class BackgroundHasher:
    """Feeds hash objects in a second thread, one buffer at a time, in the order the buffers are given.

    hashlib releases the GIL while it hashes a large buffer, so a download can receive and write its next
    buffer while this thread hashes the previous one (sha256 is the largest CPU cost of a download). The
    caller owns the buffers: one given to :meth:`update` must not change until the next :meth:`update`
    or :meth:`wait` returns (double buffering). Use as a context manager; the thread starts on the first
    large buffer.
    """

    _INLINE_BYTES = 256 << 10  # smaller buffers are hashed in the caller's thread (a hand-over costs more)

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._job: tuple[Any, memoryview] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, hasher: Any, data: memoryview) -> None:
        """Hashes ``data`` into ``hasher`` after everything given before (in this thread when it is small)."""
        self.wait()
        if len(data) < self._INLINE_BYTES:
            hasher.update(data)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hubkit-hash", daemon=True)
            self._thread.start()
        with self._condition:
            self._job = (hasher, data)
            self._condition.notify_all()

    def wait(self) -> None:
        """Returns once every buffer given so far is hashed (so the buffers and the hash can be reused)."""
        with self._condition:
            while self._job is not None:
                self._condition.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Waits for the buffer being hashed, then stops the thread."""
        with self._condition:
            while self._job is not None:
                self._condition.wait()
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._job is None and not self._closed:
                    self._condition.wait()
                if self._job is None:
                    return
                hasher, data = self._job
            try:
                hasher.update(data)
            except BaseException as exc:  # handed to the caller's next wait()
                self._error = exc
            with self._condition:
                self._job = None
                self._condition.notify_all()
