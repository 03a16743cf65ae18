"""Gzip streams for module archives: a writer that picks a level per file, a fast checked reader.

Model weights barely compress (float32 noise saves ~7% at any level) yet cost ~200 MB/s to inflate; text
assets compress well. So the writer stores incompressible files (deflate "stored" blocks inflate at memory
speed) and compresses the rest, switching level by starting a new gzip member: a gzip file may hold
several members back to back (RFC 1952), which ``gzip``, ``tar xzf`` and every gzip reader accept.
Headers are written by hand (mtime 0, no name, OS "unknown") so the bytes are the same on every platform.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

__all__ = ["GunzipReader", "GzipMembersWriter", "choose_level"]

_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, xfl 0, OS unknown


def choose_level(sample: bytes, default: int) -> int:
    """Returns 0 (store) when ``sample`` compresses by less than 10% at level 1, else ``default``.

    >>> choose_level(bytes(100_000), 6), choose_level(__import__("os").urandom(100_000), 6)
    (6, 0)
    """
    if not sample:
        return default
    return 0 if len(zlib.compress(sample, 1)) > 0.9 * len(sample) else default


class GzipMembersWriter:
    """Writes a gzip stream to ``out``; :meth:`set_level` starts a new member when the level changes.

    Args:
        out: A binary file-like object with ``write``.
        level: The initial compression level.
    """

    def __init__(self, out: Any, level: int = 6) -> None:
        self.out = out
        self.level = level
        self._compressor: Any = None
        self._total = 0

    def tell(self) -> int:
        """Uncompressed bytes written so far (what ``tarfile`` expects of its file)."""
        return self._total

    def _start(self) -> None:
        self.out.write(_HEADER)
        self._compressor = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS, 9)
        self._crc = 0
        self._size = 0

    def _finish(self) -> None:
        if self._compressor is None:
            return
        self.out.write(self._compressor.flush(zlib.Z_FINISH))
        self.out.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self._compressor = None

    def set_level(self, level: int) -> None:
        """Uses ``level`` for what follows (closing the current member if the level differs)."""
        if level != self.level:
            self._finish()
            self.level = level

    def write(self, data: Any) -> int:
        """Compresses ``data`` into the current member."""
        if self._compressor is None:
            self._start()
        view = memoryview(data)
        self._crc = zlib.crc32(view, self._crc)
        self._size += len(view)
        self._total += len(view)
        self.out.write(self._compressor.compress(view))
        return len(view)

    def close(self) -> None:
        """Finishes the last member (an empty stream still gets one, so the file is valid gzip)."""
        if self._compressor is None and self.level is not None:
            self._start()
        self._finish()


class GunzipReader(io.RawIOBase):
    """Decompresses a (possibly multi-member) gzip file, checking every member's CRC and length.

    Truncated or corrupt input raises ``zlib.error`` or ``EOFError``; reading happens in ``chunk_size``
    pieces so the per-call overhead stays small for large archives.

    Args:
        raw: A binary file opened for reading.
        chunk_size: Compressed bytes read at a time.
    """

    def __init__(self, raw: Any, chunk_size: int = 1 << 20) -> None:
        super().__init__()
        self.raw = raw
        self.chunk_size = chunk_size
        self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_member(self, rest: bytes) -> bytes | None:
        """Input of the next member, or ``None`` at the end (trailing NUL padding is tolerated)."""
        while not rest.strip(b"\0"):
            rest = self.raw.read(self.chunk_size)
            if not rest:
                return None
        return rest

    def read_piece(self, limit: int) -> bytes:
        """Returns the next decompressed bytes (between 1 and ``limit`` of them), or ``b""`` at the end.

        The bytes come straight from the decompressor, so a caller that writes them on (extraction)
        copies nothing more.

        Raises:
            EOFError: The input ends before the last member's end-of-stream marker.
            zlib.error: The input is corrupt (including a CRC or length trailer mismatch).
        """
        if limit <= 0:  # decompress(max_length=0) would mean "no limit"
            return b""
        while not self._done:
            if not self._pending:
                self._pending = self.raw.read(self.chunk_size)
                if not self._pending:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            out = self._decompressor.decompress(self._pending, limit)
            self._pending = self._decompressor.unconsumed_tail
            if self._decompressor.eof:
                # At the end of a member all leftover input is in unused_data (CPython may leave a stale
                # copy of it in unconsumed_tail, so that one is not used).
                following = self._next_member(self._decompressor.unused_data)
                self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._pending = following or b""
                self._done = following is None
            if out:
                return out
        return b""

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        out = self.read_piece(len(view))
        view[: len(out)] = out
        return len(out)
