"""Gzip streams for module archives: a writer that picks a compression level per file.

Model weights barely compress (float32 noise saves ~7% at any level) yet cost ~200 MB/s to inflate; text
assets compress well. So the writer stores incompressible files (deflate "stored" blocks inflate at memory
speed) and compresses the rest, switching level by starting a new gzip member: a gzip file may hold
several members back to back (RFC 1952), which ``gzip``, ``tar xzf`` and every gzip reader accept.
Headers are written by hand (mtime 0, no name, OS "unknown") so the bytes are the same on every platform.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

__all__ = ["GzipMembersWriter", "choose_level"]

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
        self._cuts: list[tuple[int, int]] = []  # (position, level): a member starts there (see isolate)

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

    def isolate(self, offset: int, size: int, level: int) -> None:
        """Gives the ``size`` bytes that start ``offset`` bytes from here a gzip member of their own.

        They are compressed at ``level``; what follows them goes on at the current level in a new
        member. A reader then finds a file's CRC-32 in its member's trailer (``pack_module`` isolates
        every large file's data this way).
        """
        start = self._total + offset
        self._cuts = [(start, level), (start + size, self.level)]

    def write(self, data: Any) -> int:
        """Compresses ``data`` into the current member (starting new ones at the cuts of :meth:`isolate`)."""
        view = memoryview(data).cast("B")
        count = len(view)
        while view:
            part = view
            if self._cuts:
                position, level = self._cuts[0]
                if position == self._total:
                    self._finish()
                    self.level = level
                    self._cuts.pop(0)
                    continue
                part = view[: position - self._total]
            if self._compressor is None:
                self._start()
            self._crc = zlib.crc32(part, self._crc)
            self._size += len(part)
            self._total += len(part)
            self.out.write(self._compressor.compress(part))
            view = view[len(part) :]
        return count

    def close(self) -> None:
        """Finishes the last member (an empty stream still gets one, so the file is valid gzip)."""
        if self._compressor is None and self._total == 0:
            self._start()
        self._finish()


# Reading is the standard library's: zlib's gzip decoder, member after member, in hubkit.hub.extract. A
# hand-written decoder that copied stored blocks without zlib was measured to gain nothing
# (scripts/bench_hub.py --levers) and was removed (see docs/security.md).
