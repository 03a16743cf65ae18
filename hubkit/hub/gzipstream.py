"""Gzip streams for module archives: a writer that picks a level per file, a fast checked reader.

Model weights barely compress (float32 noise saves ~7% at any level) yet cost ~200 MB/s to inflate; text
assets compress well. So the writer stores incompressible files (deflate "stored" blocks inflate at memory
speed) and compresses the rest, switching level by starting a new gzip member: a gzip file may hold
several members back to back (RFC 1952), which ``gzip``, ``tar xzf`` and every gzip reader accept.
Headers are written by hand (mtime 0, no name, OS "unknown") so the bytes are the same on every platform.
"""

from __future__ import annotations

import collections
import io
import os
import struct
import zlib
from typing import Any

__all__ = ["GunzipReader", "GzipMembersWriter", "choose_level"]

_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, xfl 0, OS unknown
_WINDOW = 32 << 10  # deflate history size
_MAX_VIEWS = 512  # buffers per writev (below every IOV_MAX)
_START, _BLOCK, _STORED, _ZLIB, _TRAILER, _DONE = range(6)  # where GunzipReader is in the stream


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


class GunzipReader(io.RawIOBase):
    """Decompresses a (possibly multi-member) gzip file, checking every member's length and CRC-32.

    Deflate *stored* blocks (what :class:`GzipMembersWriter` writes for incompressible weights) are
    parsed here and their payload handed out as views of the input, with no zlib pass and no copy;
    other blocks go through zlib. Each member's trailer is checked: its length always, its CRC-32
    unless ``check_crc`` is false — for callers that verify a pinned sha256 of the whole archive
    before trusting anything read from it, which makes the CRC redundant for integrity.

    A piece returned by ``raw.read`` is only used until the next ``raw.read`` call (so a source may
    reuse its buffers); everything handed out is valid until the next call into this reader.
    Truncated or corrupt input raises ``zlib.error`` or ``EOFError``.

    Args:
        raw: A binary source with ``read(n)`` (a file, or a download's pieces).
        chunk_size: Compressed bytes read at a time.
        check_crc: Whether to compute and compare each member's CRC-32.
    """

    # Switches for the A/B runs of scripts/bench_hub.py: stored blocks through zlib too; CRC-32 of a
    # file that starts a member computed separately instead of taken from the member.
    copy_stored = True
    reuse_member_crc = True

    def __init__(self, raw: Any, chunk_size: int = 1 << 20, check_crc: bool = True) -> None:
        super().__init__()
        self.raw = raw
        self.chunk_size = chunk_size
        self.check_crc = check_crc
        self.last_trailer_crc = 0  # the CRC-32 field of the last member that ended
        self._piece = memoryview(b"")
        self._pos = 0
        self._state = _START
        self._members = 0
        self._crc = 0  # running CRC-32 of the current member's output (when check_crc)
        self._size = 0  # output bytes of the current member so far
        self._left = 0  # payload bytes left in the current stored block
        self._final = False  # the current stored block is the member's last
        self._window: collections.deque[Any] = collections.deque()  # the member's latest stored output (the history zlib needs on a switch)
        self._window_size = 0
        self._inflater: Any = None
        self._before_refill: Any = None

    def readable(self) -> bool:
        return True

    # -- input -------------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Replaces the exhausted input piece with the next one; ``False`` at the end of the input."""
        if self._before_refill is not None:
            self._before_refill()  # views of the old piece are written before the source may reuse it
        if self._window:  # keep the last 32 KB of history as our own copy: the old piece may be reused
            history = _history(self._window)
            self._window, self._window_size = collections.deque([history]), len(history)
        data = self.raw.read(self.chunk_size)
        self._piece, self._pos = memoryview(data).cast("B"), 0
        return bool(data)

    def _take(self, count: int) -> bytes:
        """The next ``count`` input bytes, copied (headers and trailers)."""
        parts = []
        while count:
            if self._pos == len(self._piece) and not self._fill():
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            part = self._piece[self._pos : self._pos + count]
            self._pos += len(part)
            count -= len(part)
            parts.append(bytes(part))
        return b"".join(parts)

    def _peek(self) -> int | None:
        """The next input byte without consuming it, or ``None`` at the end of the input."""
        if self._pos == len(self._piece) and not self._fill():
            return None
        return self._piece[self._pos]

    # -- structure ---------------------------------------------------------------------------------

    def _start_member(self) -> bool:
        """Parses the next member's header; ``False`` at the end of the input (NUL padding allowed)."""
        first = self._peek()
        if first is None:
            if self._members:
                return False
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        if first == 0 and self._members:  # only NUL padding may follow the last member
            while True:
                if bytes(self._piece[self._pos :]).strip(b"\0"):
                    raise zlib.error("Error -3 while decompressing data: incorrect header check")
                self._pos = len(self._piece)
                if not self._fill():
                    return False
        header = self._take(10)
        flags = header[3]
        if header[:3] != b"\x1f\x8b\x08" or flags & 0xE0:
            raise zlib.error("Error -3 while decompressing data: incorrect header check")
        seen = [header]
        if flags & 0x04:  # FEXTRA
            length = self._take(2)
            seen += [length, self._take(int.from_bytes(length, "little"))]
        for flag in (0x08, 0x10):  # FNAME, FCOMMENT: NUL-terminated
            while flags & flag and (byte_ := self._take(1)):
                seen.append(byte_)
                if byte_ == b"\0":
                    break
        if flags & 0x02 and self._take(2) != struct.pack("<I", zlib.crc32(b"".join(seen)))[:2]:
            raise zlib.error("Error -3 while decompressing data: header crc mismatch")
        self._members += 1
        self._crc = self._size = self._left = self._window_size = 0
        self._window.clear()
        self._final = False
        self._inflater = None
        self._state = _BLOCK if self.copy_stored else _ZLIB
        if not self.copy_stored:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        return True

    def _start_block(self) -> None:
        """At a byte-aligned block header: a stored block is parsed here, anything else goes to zlib."""
        first = self._peek()
        if first is None:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        if (first >> 1) & 3:  # Huffman-coded: zlib takes over until the member ends, with the history
            history = _history(self._window)
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS, zdict=history) if history else zlib.decompressobj(-zlib.MAX_WBITS)
            self._window.clear()
            self._window_size = 0
            self._state = _ZLIB
            return
        header = self._take(5)
        length, complement = struct.unpack_from("<HH", header, 1)
        if length ^ complement != 0xFFFF:
            raise zlib.error("Error -3 while decompressing data: invalid stored block lengths")
        self._left, self._final = length, bool(first & 1)
        self._state = _STORED

    def _end_member(self) -> None:
        crc, size = struct.unpack("<II", self._take(8))
        if size != self._size & 0xFFFFFFFF:
            raise zlib.error("Error -3 while decompressing data: incorrect length check")
        if self.check_crc and crc != self._crc:
            raise zlib.error("Error -3 while decompressing data: incorrect data check")
        self.last_trailer_crc = crc
        self._state = _START

    def _settle(self) -> None:
        """Moves past a member's end when none of its output is left, so a new member shows as such."""
        while True:
            if self._state == _TRAILER:
                self._end_member()
            elif self._state == _STORED and not self._left:
                if not self._final:
                    self._state = _BLOCK
                    return
                self._end_member()
            elif self._state == _START:
                if not self._start_member():
                    self._state = _DONE
                return
            else:
                return

    def at_member_end(self) -> bool:
        """Whether the current member ends exactly here (its trailer is then consumed and checked).

        Only a member made of stored blocks is looked into (empty blocks are skipped); anything else
        answers ``False``.
        """
        while self._state in (_STORED, _BLOCK):
            if self._state == _STORED:
                if self._left:
                    return False
                if self._final:
                    self._end_member()
                    return True
                self._state = _BLOCK
            self._start_block()
        return False

    # -- output ------------------------------------------------------------------------------------

    def read_piece(self, limit: int) -> Any:
        """Returns the next decompressed bytes (between 1 and ``limit`` of them), or ``b""`` at the end.

        The result is ``bytes`` from zlib or a view of the input (stored blocks), valid until the next
        call into this reader; a caller that writes it on (extraction) copies nothing more.

        Raises:
            EOFError: The input ends before the last member's end-of-stream marker.
            zlib.error: The input is corrupt (including a CRC or length trailer mismatch).
        """
        if limit <= 0:  # decompress(max_length=0) would mean "no limit"
            return b""
        while True:
            state = self._state
            if state == _STORED:
                if not self._left:
                    if self._final:
                        self._end_member()
                    else:
                        self._state = _BLOCK
                    continue
                if self._pos == len(self._piece) and not self._fill():
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                out = self._piece[self._pos : self._pos + min(limit, self._left)]
                self._pos += len(out)
                self._left -= len(out)
                self._window.append(out)
                self._window_size += len(out)
                while self._window_size - len(self._window[0]) >= _WINDOW:
                    self._window_size -= len(self._window.popleft())
            elif state == _BLOCK:
                self._start_block()
                continue
            elif state == _ZLIB:
                if self._pos == len(self._piece) and not self._fill():
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                data = self._piece[self._pos :]
                out = self._inflater.decompress(data, limit)
                if self._inflater.eof:
                    self._pos += len(data) - len(self._inflater.unused_data)
                    self._state = _TRAILER
                else:
                    self._pos += len(data) - len(self._inflater.unconsumed_tail)
                if not out:
                    continue
            elif state == _TRAILER:
                self._end_member()
                continue
            elif state == _START:
                if not self._start_member():
                    self._state = _DONE
                continue
            else:
                return b""
            if self.check_crc:
                self._crc = zlib.crc32(out, self._crc)
            self._size += len(out)
            return out

    def copy_to(self, fd: int, count: int, crc: int | None = None) -> int | None:
        """Writes the next ``count`` decompressed bytes to the file descriptor ``fd``; returns their CRC-32.

        Views of the input are gathered and written with one ``writev`` per input piece. When the bytes
        start a member (``crc`` is ``None`` and nothing of the member was read yet), their CRC-32 comes
        for free: the member's running CRC, or the trailer's when the member is made of stored blocks
        and ends exactly here. ``None`` is returned when neither applies and ``check_crc`` is off
        (then the caller computes it).

        Args:
            fd: An open file descriptor to write to.
            count: Decompressed bytes to copy.
            crc: The CRC-32 of bytes of the same file that precede these, or ``None`` if none do.

        Raises:
            EOFError: The input ends early.
            zlib.error: The input is corrupt.
        """
        if not count:
            return crc or 0
        if crc is None:
            self._settle()
        fresh = self.reuse_member_crc and crc is None and self._size == 0 and self._state in (_BLOCK, _ZLIB)
        if fresh and not self.check_crc and self._state == _BLOCK:
            self._start_block()  # a stored member's trailer will hold the CRC; a compressed one's is unknown
        member_crc = fresh and self.check_crc
        trailer_crc = fresh and not self.check_crc and self._state == _STORED
        compute = not member_crc and not trailer_crc
        running = crc or 0
        views: list[Any] = []

        def flush() -> None:
            _write_views(fd, views)
            views.clear()

        self._before_refill = flush
        try:
            while count:
                out = self.read_piece(count)
                if not out:
                    raise EOFError("The archive ends in the middle of an entry.")
                count -= len(out)
                if compute:
                    running = zlib.crc32(out, running)
                views.append(out)
                if len(views) >= _MAX_VIEWS:
                    flush()
            flush()
        finally:
            self._before_refill = None
        if member_crc:
            return self._crc
        if trailer_crc:
            return self.last_trailer_crc if self.at_member_end() else None
        return running

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        out = self.read_piece(len(view))
        view[: len(out)] = out
        return len(out)


def _write_views(fd: int, views: list[Any]) -> None:
    """Writes every buffer of ``views`` to ``fd`` in order (one ``writev``; short writes are finished)."""
    if not views:
        return
    skip = os.writev(fd, views)
    for view in views:
        if skip >= len(view):
            skip -= len(view)
            continue
        rest, skip = memoryview(view)[skip:], 0
        while rest:
            rest = rest[os.write(fd, rest) :]


def _history(window: Any) -> bytes:
    """The last 32 KB (at most) of the views in ``window``, as one new ``bytes``."""
    parts, need = [], _WINDOW
    for part in reversed(window):
        part = memoryview(part)[-need:]
        parts.append(part)
        need -= len(part)
        if need <= 0:
            break
    return b"".join(reversed(parts))
