"""Safe extraction of module archives: nothing is ever written outside the target directory.

Only regular files and directories are accepted. Absolute paths, ``..`` components, symlinks, hard
links, devices, FIFOs and sparse entries are refused, and so are archives that would expand beyond a
size limit (decompression bombs) or hold too many entries. ``tarfile`` parses the headers; the file
data is copied by hubkit itself (never ``TarFile.extract``) straight from the decompressor to the new
file, created with fixed permissions and ``O_EXCL`` so no entry can replace another.

:class:`BackgroundExtraction` runs the same extraction in a second thread while the archive is still
being downloaded, reading the growing temp file up to what the download has written.
"""

from __future__ import annotations

import collections
import contextlib
import os
import posixpath
import struct
import tarfile
import threading
import zlib
from typing import Any

from hubkit.errors import DownloadError
from hubkit.format.bounded_io import open_regular, open_regular_fd

__all__ = [
    "GZIP_MAGIC",
    "BackgroundExtraction",
    "ExtractedFile",
    "UnsafeArchiveError",
    "archive_format",
    "extract_stream",
    "merge_relative_path",
    "safe_extract",
]

_READ_CHUNK = 1 << 20  # compressed bytes read at a time
_HANDOFF_PIECES = 16  # received pieces (up to 1 MB each) waiting for the extraction thread, at most
_DOWNLOAD_WRITES_AT = 4  # pieces waiting that make the download thread write the file itself (it has time)
_PIECE = 4 << 20  # most decompressed bytes held at once (memory stays flat whatever the archive size)
_TRAILER_CRC_MIN = 1 << 20  # smallest file whose CRC-32 is taken from its gzip member's trailer when it can be
_PLAIN_HEADER_START = b"\x1f\x8b\x08\x00"  # gzip magic, deflate, no optional header fields (FLG 0)
_PLAIN_HEADER_SIZE = 10  # such a header: the 4 bytes above, mtime, extra flags, OS
_MAX_HEADER_BYTES = 1 << 20  # largest extended header (PAX record, GNU long name) read into memory
_TAR_OVERHEAD_PER_ENTRY = 4 << 10  # header, long-name/PAX headers and padding of one ordinary entry
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class UnsafeArchiveError(DownloadError):
    """An archive holds an entry hubkit refuses to extract."""


class ExtractedFile:
    """One regular file written by :func:`safe_extract`: its relative path, size and checksum.

    Attributes:
        path: Path relative to the destination, with ``/`` separators.
        size: Byte count.
        crc32: CRC-32 of the content (computed while copying: nearly free), or ``None``.
        sha256: Hex sha256 of the content, or ``None`` (extraction does not compute it; the archive's
            sha256 already proves the content).
        crc32_stated: ``crc32`` is the one the (sha256-pinned) archive states for the file's gzip member,
            not computed (see ``check_crc``): a later check that finds another CRC-32 cannot tell a
            modified file from an archive that stated a wrong one.
    """

    __slots__ = ("crc32", "crc32_stated", "path", "sha256", "size")

    def __init__(
        self, path: str, size: int, sha256: str | None = None, crc32: int | None = None, crc32_stated: bool = False
    ) -> None:
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.crc32 = crc32
        self.crc32_stated = crc32_stated


def merge_relative_path(root: str, relative: str) -> str:
    """Joins an archive member name onto ``root``, refusing any name that could leave it.

    ``.`` components and repeated slashes are dropped; absolute names and any ``..`` component are refused
    (even ones that would stay inside, such as ``a/../b``: a module archive never needs them).

    >>> merge_relative_path("/tmp/x", "./variables//a.safetensors")
    '/tmp/x/variables/a.safetensors'
    >>> merge_relative_path("/tmp/x", "../etc/passwd")
    Traceback (most recent call last):
    ...
    hubkit.hub.extract.UnsafeArchiveError: Archive entry '../etc/passwd' has a '..' component; refusing to extract it.

    Args:
        root: Destination directory.
        relative: Member name from the archive, with ``/`` separators.

    Returns:
        The destination path inside ``root``.

    Raises:
        UnsafeArchiveError: The name is absolute, contains ``..``, or is empty.
    """
    if relative.startswith("/") or relative.startswith("\\") or (len(relative) > 1 and relative[1] == ":"):
        raise UnsafeArchiveError(f"Archive entry {relative!r} has an absolute path; refusing to extract it.")
    parts = [part for part in relative.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"Archive entry {relative!r} has a '..' component; refusing to extract it.")
    if not parts:
        return root
    return os.path.join(root, *parts)


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    if member.issparse():
        return "a sparse file"
    return "a special file"


GZIP_MAGIC = b"\x1f\x8b"
_MAX_NAME_BYTES = 4096  # longest member path (Linux PATH_MAX)
_MAX_COMPONENT_BYTES = 255  # longest path component (NAME_MAX)
_MAX_DEPTH = 128  # most directories in a member path (a module needs a few)
_MAX_HEADER_READS = 16  # header reads (plain, GNU long name, PAX) before one entry; ordinary entries need 1-5


def archive_format(head: bytes) -> str | None:
    """Names the archive format of a file from its first bytes: ``"gzip"``, ``"tar"`` or ``None``.

    A gzip file starts with its magic; a tar file with a 512-byte header whose checksum matches
    (the ``.tar``/``.tar.gz``/``.tgz`` extension of a handle is never trusted).

    >>> archive_format(bytes([0x1F, 0x8B, 8])), archive_format(b"<html>")
    ('gzip', None)

    Args:
        head: At least the first 512 bytes of the file (or all of it, when it is shorter).
    """
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if len(head) >= tarfile.BLOCKSIZE:
        block = head[: tarfile.BLOCKSIZE]
        field = block[148:156].replace(b"\0", b" ").strip()
        if field and set(field) <= set(b"01234567") and block.count(0) != len(block):
            rest = block[:148] + b" " * 8 + block[156:]  # the checksum counts its own field as spaces
            signed = sum(struct.unpack(f"{len(rest)}b", rest))
            if int(field, 8) in (sum(rest), signed):
                return "tar"
    return None


class _Gunzip:
    """The decompressed bytes of a gzip file of any number of members, through zlib.

    By default zlib's own gzip decoder (in C) parses each member's header, skipping name and comment
    fields without storing them, and checks each member's CRC-32 and length trailer. With
    ``check_crc=False`` (the caller verifies a pinned sha256 of every compressed byte, which proves more
    than the CRC), a member whose header is the plain 10 bytes (no optional fields: what
    :func:`~hubkit.hub.registry.pack_module` and ``gzip`` write) is inflated raw, so zlib computes no
    CRC-32 (~10% of an install's CPU); its length trailer is still checked. Any other header goes through
    zlib's gzip decoder as before, so no variable-length header field is ever parsed here.
    Between members, zero padding is skipped as ``gzip`` does; anything else that is not a new member is
    an error (``incorrect header check``), and so is input that ends inside a member (a truncated archive
    never extracts the files that happen to precede the cut).

    It also remembers where the last few members began and ended in the decompressed stream, with the
    CRC-32 of their trailers (checked by zlib, or with ``check_crc=False`` as the sha256-pinned archive
    states it): a file whose data is exactly one member (how
    :func:`~hubkit.hub.registry.pack_module` stores every large file) gets its CRC-32 from there, with no
    second pass over its bytes. A returned piece never spans two members.
    """

    def __init__(self, raw: Any, head: bytes, chunk_size: int, check_crc: bool = True) -> None:
        self._raw = raw
        self._chunk_size = chunk_size
        self._check_crc = check_crc
        self._input: bytes | memoryview = head
        self._decompressor: Any = None
        self._raw_member = False  # this member is inflated raw (its 10-byte header skipped, trailer read here)
        self._member_out = 0  # decompressed bytes of this member so far
        self._in_member = False
        self._done = False
        self._produced = 0  # decompressed bytes returned so far
        self._consumed_tail = b""  # the last 8 compressed bytes zlib consumed (the trailer, at a member's end)
        self._starts: list[int] = [0]  # where the last few members began (decompressed offsets)
        self._ended: list[tuple[int, int, int, bool]] = []  # (start, end, trailer CRC-32, checked) of the last few

    def _more(self) -> bytes | memoryview:
        data = self._raw.read(self._chunk_size)  # zlib inflates a piece handed over in memory without a copy
        return data if data else b""

    def _at_least(self, count: int) -> bool:
        """Reads until ``count`` input bytes wait (fewer only at the end of the file)."""
        while len(self._input) < count:
            more = self._more()
            if not more:
                return False
            self._input = bytes(self._input) + bytes(more)
        return True

    def _start_member(self) -> bool:
        """Skips zero padding and starts the next member; ``False`` at the end of the file."""
        self._input = bytes(self._input).lstrip(b"\0")  # zlib's unused data: bytes already
        while not self._input:
            more = self._more()
            if not more:
                return False
            self._input = bytes(more).lstrip(b"\0")  # a member ended with the input: rare
        self._raw_member = False
        if not self._check_crc and self._at_least(_PLAIN_HEADER_SIZE) and self._input[:4] == _PLAIN_HEADER_START:
            self._input = self._input[_PLAIN_HEADER_SIZE:]
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_member = True
        else:
            self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)  # zlib checks the magic and header
        self._member_out = 0
        self._in_member = True
        return True

    def _raw_trailer(self) -> int:
        """Reads a raw member's 8-byte trailer, checks its length and returns its CRC-32."""
        if not self._at_least(8):
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        crc, size = struct.unpack("<II", self._input[:8])
        if size != self._member_out & 0xFFFFFFFF:
            raise zlib.error("Error -3 while decompressing data: incorrect length check")
        self._input = self._input[8:]
        return int(crc)

    def starts_member(self, position: int) -> bool:
        """Whether a member begins at decompressed offset ``position`` (among the last few seen)."""
        return position in self._starts

    def member_crc(self, start: int, end: int) -> tuple[int, bool] | None:
        """``(CRC-32, checked)`` of a member that spans exactly ``[start, end)``, if one ended recently.

        ``checked`` is False for a raw member: its trailer's CRC-32 as the archive states it.
        """
        for began, ended, crc, checked in self._ended:
            if (began, ended) == (start, end):
                return crc, checked
        return None

    def read_piece(self, limit: int) -> bytes:
        """Returns the next 1 to ``limit`` decompressed bytes, or ``b""`` at the end of the file."""
        while not self._done:
            if not self._in_member and not self._start_member():
                if not self._ended:  # not even one member: an empty or all-zero file
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                self._done = True
                return b""
            if not self._input:
                self._input = self._more()
                if not self._input:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            decompressor = self._decompressor
            given = self._input
            out = decompressor.decompress(given, limit)
            self._produced += len(out)
            self._member_out += len(out)
            rest = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            self._input = rest
            if not self._raw_member:
                consumed = len(given) - len(rest)
                self._consumed_tail = (self._consumed_tail + given[max(0, consumed - 8) : consumed])[-8:]
            if decompressor.eof:
                # A raw member's trailer is read here; zlib's gzip decoder consumed (and checked) it last.
                crc = self._raw_trailer() if self._raw_member else int.from_bytes(self._consumed_tail[:4], "little")
                self._ended = [*self._ended[-3:], (self._starts[-1], self._produced, crc, not self._raw_member)]
                self._starts = [*self._starts[-3:], self._produced]  # where the next member, if any, begins
                self._in_member = False
                self._consumed_tail = b""
            if out:
                return out
        return b""


class _PlainTar:
    """A plain (uncompressed) tar file as pieces, like :class:`_Gunzip`."""

    def __init__(self, raw: Any, head: bytes, chunk_size: int) -> None:
        self._raw = raw
        self._head = head
        self._chunk_size = chunk_size

    def read_piece(self, limit: int) -> bytes:
        if self._head:
            out, self._head = self._head[:limit], self._head[limit:]
            return out
        data = self._raw.read(min(limit, self._chunk_size))
        return bytes(data) if data else b""


def _open_pieces(raw: Any, source: str, check_crc: bool = True) -> Any:
    head = b""
    while len(head) < tarfile.BLOCKSIZE:
        more = raw.read(tarfile.BLOCKSIZE - len(head))
        if not more:
            break
        head += bytes(more)
    kind = archive_format(head)
    if kind == "gzip":
        return _Gunzip(raw, head, _READ_CHUNK, check_crc)
    if kind == "tar":
        return _PlainTar(raw, head, _READ_CHUNK)
    raise DownloadError(
        f"Failed to extract archive {source!r}: it is corrupted or not a .tar.gz (its bytes are neither gzip nor tar)."
    )


class _ForwardStream:
    """The decompressed archive as the forward-only file ``tarfile`` reads headers from.

    ``tarfile`` (mode ``"r:"``) only reads, tells and seeks forward past member data. It reads headers
    through :meth:`read`, which bounds both their size and their number before each entry (chained
    extended headers would otherwise recurse in ``tarfile`` until ``RecursionError``).
    """

    def __init__(self, pieces: Any, limit: int, source: str) -> None:
        self._pieces = pieces
        self._piece = memoryview(b"")
        self._position = 0
        self._limit = limit  # most decompressed bytes the whole stream may hold (files + tar overhead)
        self._source = source
        self.header_reads = 0  # reset by the extraction loop at each entry

    def tell(self) -> int:
        return self._position

    def view(self, size: int) -> memoryview:
        """Returns the next 1 to ``size`` bytes (``size`` > 0); raises ``EOFError`` at the end."""
        if not self._piece:
            if self._position >= self._limit:
                raise UnsafeArchiveError(
                    f"Archive {self._source!r} decompresses to more than {self._limit} bytes (files plus tar "
                    "headers); refusing it as a possible decompression bomb."
                )
            self._piece = memoryview(self._pieces.read_piece(_PIECE))
            if not self._piece:
                raise EOFError("The archive ends in the middle of an entry.")
        out = self._piece[:size]
        self._piece = self._piece[len(out):]
        self._position += len(out)
        return out

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise tarfile.ReadError("Unbounded read of a streamed archive.")
        if size > _MAX_HEADER_BYTES:  # tarfile reads only headers (long names, PAX records) through here
            raise UnsafeArchiveError(
                f"Archive {self._source!r} has an entry header of {size} bytes (more than {_MAX_HEADER_BYTES}); "
                "refusing it as a possible decompression bomb."
            )
        self.header_reads += 1
        if self.header_reads > _MAX_HEADER_READS:
            raise UnsafeArchiveError(
                f"Archive {self._source!r} chains more than {_MAX_HEADER_READS} headers before one entry "
                "(extended headers); refusing it."
            )
        parts = []
        while size > 0:
            try:
                part = self.view(size)
            except EOFError:
                break
            parts.append(part)
            size -= len(part)
        return b"".join(parts)

    def seek(self, position: int, whence: int = 0) -> int:
        if whence != 0 or position < self._position:
            raise tarfile.ReadError("The archive's entries are not in stream order.")
        while self._position < position:
            self.view(min(position - self._position, _PIECE))
        return self._position

    def copy_to(self, fd: int, size: int) -> tuple[int, bool]:
        """Writes the next ``size`` bytes to ``fd``; returns their CRC-32 and whether it is only stated.

        When the bytes start a gzip member, their CRC-32 is not computed while copying: if they turn out
        to be that whole member, it is its trailer's (checked by zlib, or for a raw member only stated
        by the archive); otherwise they are read back from ``fd``.
        """
        start, crc = self._position, 0
        from_trailer = size >= _TRAILER_CRC_MIN and getattr(self._pieces, "starts_member", _never)(start)
        remaining = size
        while remaining > 0:
            try:
                part = self.view(min(remaining, _PIECE))
            except EOFError:
                raise EOFError("The archive ends in the middle of an entry.") from None
            if not from_trailer:
                crc = zlib.crc32(part, crc)
            remaining -= len(part)
            while part:
                part = part[os.write(fd, part):]
        if not from_trailer:
            return crc, False
        if not self._piece and self._position < self._limit:
            self._piece = memoryview(self._pieces.read_piece(_PIECE))  # lets zlib reach the member's trailer
        trailer = self._pieces.member_crc(start, self._position)
        if trailer is None:
            return _crc_of(fd, size), False
        return trailer[0], not trailer[1]

    def drain(self) -> None:
        """Reads to the end of the file (tar padding, then for gzip every member's checked trailer)."""
        self._position += len(self._piece)
        self._piece = memoryview(b"")
        while piece := self._pieces.read_piece(_PIECE):
            self._position += len(piece)
            if self._position > self._limit:
                raise UnsafeArchiveError(
                    f"Archive {self._source!r} has more than {self._limit} decompressed bytes after its last "
                    "entry; refusing it as a possible decompression bomb."
                )


def _never(position: int) -> bool:
    return False


def _crc_of(fd: int, size: int) -> int:
    """The CRC-32 of the first ``size`` bytes of the file ``fd`` (just written: read back from the page cache)."""
    crc, offset = 0, 0
    while offset < size:
        chunk = os.pread(fd, min(_PIECE, size - offset), offset)
        if not chunk:
            raise EOFError("An extracted file is shorter than its entry.")
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return crc


def _check_name(name: str, source: str) -> None:
    """Refuses member names the filesystem cannot hold (NUL bytes, over-long paths or components)."""
    if "\0" in name:
        raise UnsafeArchiveError(f"Archive entry {name!r} of {source!r} has a NUL byte in its name; refusing it.")
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > _MAX_NAME_BYTES or any(len(part) > _MAX_COMPONENT_BYTES for part in encoded.split(b"/")):
        raise UnsafeArchiveError(
            f"Archive entry {name[:80]!r}... of {source!r} has a name longer than the filesystem allows "
            f"({_MAX_COMPONENT_BYTES} bytes per component, {_MAX_NAME_BYTES} in all); refusing it."
        )
    if encoded.count(b"/") >= _MAX_DEPTH:  # deeper trees exhaust recursion in makedirs and rmtree
        raise UnsafeArchiveError(
            f"Archive entry {name[:80]!r}... of {source!r} is nested more than {_MAX_DEPTH} directories deep; refusing it."
        )


def safe_extract(
    archive_path: str,
    destination: str,
    max_bytes: int,
    max_members: int = 100_000,
    source: str | None = None,
    check_crc: bool = True,
) -> list[ExtractedFile]:
    """Extracts a ``.tar.gz`` or ``.tar`` (told apart by their bytes) into the existing empty directory ``destination``.

    Args:
        archive_path: The archive file (a regular file; a FIFO or device is refused, never read).
        destination: An empty directory owned by the caller (a private temp dir).
        max_bytes: Refuse the archive once its files add up to more than this many bytes.
        max_members: Refuse the archive once it has more than this many entries.
        source: How to name the archive in error messages (e.g. its URL); defaults to the path.
        check_crc: Whether zlib checks every gzip member's CRC-32 as it inflates. Pass ``False`` only when
            the caller verifies a pinned sha256 of the whole archive before using what was extracted: a
            plainly-headed member is then inflated raw (no CRC-32 computed; its length is still checked).

    Returns:
        The regular files written, in archive order.

    Raises:
        UnsafeArchiveError: An entry is unsafe or the archive is too large.
        DownloadError: The archive is corrupted, is not a ``.tar.gz`` or ``.tar``, or is not a regular file.
    """
    source = source or archive_path
    with open_regular(archive_path, "Archive", error=DownloadError, shown=source) as raw:
        return extract_stream(raw, destination, max_bytes, max_members, source, check_crc)


def extract_stream(
    raw: Any, destination: str, max_bytes: int, max_members: int, source: str, check_crc: bool = True
) -> list[ExtractedFile]:
    """:func:`safe_extract` from any binary source with ``read(n)`` (a file, or a growing download).

    Args:
        raw: The compressed archive, read front to back once.
        destination: An empty directory owned by the caller.
        max_bytes: Refuse the archive once its files add up to more than this many bytes.
        max_members: Refuse the archive once it has more than this many entries.
        source: How to name the archive in error messages.
        check_crc: As for :func:`safe_extract`.

    Returns:
        The regular files written, in archive order.

    Raises:
        UnsafeArchiveError: An entry is unsafe or the archive is too large.
        DownloadError: The archive is corrupted or is neither a ``.tar.gz`` nor a ``.tar``; or a file
            cannot be written (the message names it).
    """
    written: list[ExtractedFile] = []
    seen: set[str] = set()
    total = 0
    target = destination
    # _Gunzip (not tarfile's own "r|gz") reads every gzip member and checks its length and CRC trailer, so
    # a truncated archive fails instead of extracting the members that happen to precede the cut.
    # Besides the files' own bytes, a tar stream holds a 512-byte header and up to 511 bytes of padding per
    # entry (a few headers for long names), and the end-of-archive blocks.
    limit = max_bytes + max_members * _TAR_OVERHEAD_PER_ENTRY + _MAX_HEADER_BYTES
    try:
        stream = _ForwardStream(_open_pieces(raw, source, check_crc), limit, source)
        with tarfile.open(fileobj=stream, mode="r:") as archive:  # type: ignore[call-overload]
            for count, member in enumerate(archive, start=1):
                stream.header_reads = 0
                if count > max_members:
                    raise UnsafeArchiveError(f"Archive {source!r} has more than {max_members} entries; refusing it.")
                _check_name(member.name, source)
                target = merge_relative_path(destination, member.name)
                relative = os.path.relpath(target, destination).replace(os.sep, "/")
                if member.isdir():
                    if relative != "." and relative in seen and not os.path.isdir(target):
                        raise UnsafeArchiveError(f"Archive entry {member.name!r} appears twice; refusing it.")
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    seen.add(relative)
                    continue
                if not member.isreg() or member.issparse():
                    raise UnsafeArchiveError(
                        f"Archive entry {member.name!r} of {source!r} is {_member_kind(member)}; "
                        "only regular files and directories are allowed."
                    )
                if relative == "." or relative in seen:
                    raise UnsafeArchiveError(f"Archive entry {member.name!r} appears twice; refusing it.")
                total += member.size
                if total > max_bytes:
                    raise UnsafeArchiveError(
                        f"Archive {source!r} expands to more than {max_bytes} bytes; refusing it as a possible "
                        "decompression bomb (raise HUBKIT_MAX_EXTRACT_BYTES if it is genuine)."
                    )
                seen.add(relative)
                if stream.tell() != member.offset_data:  # pragma: no cover - tarfile just read this header
                    raise tarfile.ReadError(f"entry {member.name!r} is not where its header says")
                written.append(_copy_member(stream, member, target, relative))
        stream.drain()
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise UnsafeArchiveError(f"Archive {source!r} has entries that collide with each other ({exc}).") from None
    except RecursionError:
        raise UnsafeArchiveError(f"Archive {source!r} nests its headers too deeply; refusing it.") from None
    except OSError as exc:
        if exc.errno is not None:  # a local filesystem problem (disk full, permissions): not the archive's fault
            raise DownloadError(
                f"Cannot write {target!r} while extracting archive {source!r}: {exc.strerror or exc}."
            ) from None
        raise DownloadError(f"Failed to extract archive {source!r}: it is corrupted or not a .tar.gz ({exc}).") from None
    except (tarfile.TarError, EOFError, zlib.error, ValueError, OverflowError, UnicodeError) as exc:
        raise DownloadError(f"Failed to extract archive {source!r}: it is corrupted or not a .tar.gz ({exc}).") from None
    return written


def _copy_member(stream: _ForwardStream, member: tarfile.TarInfo, target: str, relative: str) -> ExtractedFile:
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    fd = os.open(target, _OPEN_FLAGS, 0o644)
    try:
        crc, stated = stream.copy_to(fd, member.size)
    finally:
        os.close(fd)
    return ExtractedFile(posixpath.normpath(relative), member.size, crc32=crc, crc32_stated=stated)


class _Abandoned(Exception):
    """Raised inside the extraction thread when its extraction is no longer wanted."""


class BackgroundExtraction:
    """Extracts an archive in a second thread while another thread is still downloading it.

    The download hands every received piece over in memory (:meth:`take`): the extraction thread writes
    it to the download file ``archive_path`` (which makes an interrupted download resumable) and
    extracts from the piece itself, so the file is never read back. When the extraction falls behind
    (``_DOWNLOAD_WRITES_AT`` pieces wait), the download thread has time to spare and writes the waiting
    pieces itself. Either way pieces are written one at a time, in order: what is on disk is always an
    exact start of the body, whoever wrote it. At most ``_HANDOFF_PIECES`` pieces
    wait for it (the download blocks meanwhile), which bounds memory and keeps the file within that many
    pieces of what was received. Bytes already in the file (the start of a resumed download) and a
    download that writes the file itself (:meth:`advance`) are read from the file, never past what was
    reported as written. zlib, sha256 and file I/O release the GIL, so the two threads use two cores:
    the download receives and hashes, the extraction writes the download file, inflates and writes the
    extracted files (CPU per 210 MB of stored weights from nginx, fifth session: 0.35 s, of which sha256
    0.24 s, against 0.25 s; with nginx on the same two cores that is about all of them, so a third
    thread hashing measured as a wash, twice).
    Nothing here decides whether the archive is trusted: the caller verifies the download's sha256 and
    size and only then uses what :meth:`finish` returns; on any failure the destination is thrown away.

    Use as a context manager: leaving the block stops and joins the thread, so nothing writes into the
    destination afterwards, and writes the pieces still waiting to the download file (so a download
    that failed on the network resumes from every byte it received).

    Args:
        archive_path: The temp file the download writes (it need not exist yet).
        destination: An empty private directory to extract into.
        max_bytes: As for :func:`safe_extract`.
        max_members: As for :func:`safe_extract`.
        source: How to name the archive in error messages (e.g. its URL).
        check_crc: As for :func:`safe_extract`.
    """

    def __init__(
        self, archive_path: str, destination: str, max_bytes: int, max_members: int, source: str, check_crc: bool = True
    ) -> None:
        self.archive_path = archive_path
        self.destination = destination
        self._limits = (max_bytes, max_members, source, check_crc)
        self._condition = threading.Condition()
        self._available = 0  # bytes of the archive known so far: in the file, or waiting in _pieces
        self._in_file = 0  # bytes the download itself wrote to the file (read from there)
        self._on_disk = 0  # bytes at the start of the file that are written (always a whole prefix)
        self._pieces: collections.deque[tuple[int, memoryview]] = collections.deque()  # (offset, bytes) to extract
        self._unwritten: collections.deque[tuple[int, memoryview]] = collections.deque()  # ... to write, in order
        self._write_lock = threading.Lock()  # one file write at a time, so they land in order
        self._spare: list[bytearray] = []  # buffers of pieces done with, for the download's next pieces
        self._download_done = False
        self._abandoned = False
        self._files: list[ExtractedFile] | None = None
        self._error: BaseException | None = None
        self._source_fd: int | None = None  # a duplicate of the download's own descriptor (use_descriptor)
        self._thread = threading.Thread(target=self._run, name="hubkit-extract", daemon=True)
        self._thread.start()

    def __enter__(self) -> BackgroundExtraction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()
        try:
            if self._error is None:  # the archive is not known to be bad: keep what was received, to resume
                self._write_waiting_pieces()
        finally:
            if self._source_fd is not None:
                os.close(self._source_fd)
                self._source_fd = None

    def use_descriptor(self, fd: int) -> None:
        """Reads and writes the archive through (a duplicate of) the download's own descriptor ``fd``.

        The temp file sits in a cache directory others may write to: a file renamed over its path while
        the download runs must not be what is extracted (the download verifies the bytes it received).
        Pieces are taken (:meth:`take`) only once a descriptor was given.
        """
        with self._condition:
            if self._source_fd is None:
                self._source_fd = os.dup(fd)

    # -- called by the download thread ---------------------------------------------------------------

    def piece_buffer(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes for the download to receive the next piece into (then :meth:`take`).

        Buffers of pieces already extracted are reused (new memory costs a page fault per 4 KiB), but only
        when nothing holds a view of them any more: a bytearray with live views refuses to change its
        size, which is checked here. One still in use is dropped, never written over.
        """
        with self._condition:
            while self._spare:
                buffer = self._spare.pop()
                if len(buffer) == size and _unshared(buffer):
                    return buffer
        buffer = bytearray(size + 1)
        del buffer[-1]  # room for _unshared's byte: it never reallocates
        return buffer

    def take(self, offset: int, piece: memoryview) -> bool:
        """Takes the next received piece (``offset`` is where it starts in the archive): it is written to
        the download file and extracted by the extraction thread. ``piece`` (a view of a buffer from
        :meth:`piece_buffer`, or any buffer) must never be changed afterwards.

        Blocks while ``_HANDOFF_PIECES`` pieces are waiting. When ``_DOWNLOAD_WRITES_AT`` are (the
        extraction is behind, so the download has time to spare), writes the waiting pieces to the file
        here, in order, in the download's thread.

        Returns:
            ``False`` when the piece is not taken (no descriptor was given, or the download started over):
            the download writes it itself and reports it with :meth:`advance`.

        Raises:
            HubkitError: The extraction already failed (the archive is bad, or the file cannot be
                written): the download stops at once.
        """
        with self._condition:
            while len(self._pieces) >= _HANDOFF_PIECES and self._error is None and not self._abandoned:
                self._condition.wait()
            if self._abandoned or self._source_fd is None:
                return False
            if self._error is not None:
                raise self._error
            if offset != self._available:  # pragma: no cover - the download hands pieces over in order
                raise RuntimeError(f"piece at {offset} handed over after {self._available} bytes")
            self._pieces.append((offset, piece))
            self._unwritten.append((offset, piece))
            self._available = offset + len(piece)
            self._condition.notify_all()
            behind = len(self._pieces) >= _DOWNLOAD_WRITES_AT
        if behind:
            self._write_through(self._available)
        return True

    def advance(self, available: int) -> None:
        """Reports that the download wrote the archive file itself up to ``available`` bytes.

        Raises:
            HubkitError: The extraction already failed (the archive is bad): the download stops at once.
        """
        if self._error is not None and not self._abandoned:
            raise self._error
        with self._condition:
            self._available = self._in_file = self._on_disk = available
            self._condition.notify_all()

    def restart(self) -> None:
        """The download starts over from byte 0: stop following it (:meth:`finish` extracts afterwards)."""
        self.abandon()
        with self._condition:
            self._pieces.clear()  # the file is truncated next: pieces of the old body are never written
            self._unwritten.clear()

    def abandon(self) -> None:
        """Stops the extraction thread and waits for it; what it wrote stays for the caller to delete."""
        with self._condition:
            self._abandoned = True
            self._condition.notify_all()
        self._thread.join()

    def finish(self) -> list[ExtractedFile]:
        """Waits for the extraction of the complete, verified archive and returns the files written.

        Call once the download has finished (and been verified). If the extraction was abandoned
        (the download started over), the archive is extracted now, into the emptied destination.

        Raises:
            UnsafeArchiveError: An entry is unsafe or the archive is too large.
            DownloadError: The archive is corrupted or is not a ``.tar.gz``.
        """
        with self._condition:
            self._download_done = True
            self._condition.notify_all()
        self._thread.join()
        if self._abandoned:  # the download started over: extract the finished file from scratch
            empty_directory(self.destination)
            if self._source_fd is None:
                return safe_extract(self.archive_path, self.destination, *self._limits)
            return extract_stream(_DescriptorReader(self._source_fd), self.destination, *self._limits)
        if self._error is not None:
            raise self._error
        assert self._files is not None  # the thread ended without abandonment: files or an error
        return self._files

    def _write_waiting_pieces(self) -> None:
        """Writes the pieces the extraction thread (ended) did not get to, in order, as far as it can."""
        with contextlib.suppress(DownloadError):  # the file then holds a shorter start: still one to resume from
            self._write_through(self._available)
        self._pieces.clear()
        self._unwritten.clear()

    def _write_through(self, end: int) -> None:
        """Writes waiting pieces to the download file, in order, until it holds ``end`` bytes (or no piece
        waits). Called by both threads: one piece at a time under the write lock, the next one always
        where the file ends."""
        while True:
            with self._write_lock:
                with self._condition:
                    if not self._unwritten or self._on_disk >= end or self._source_fd is None:
                        return
                    offset, piece = self._unwritten[0]
                    fd = self._source_fd
                if offset != self._on_disk:  # pragma: no cover - pieces are queued in order
                    raise RuntimeError(f"piece at {offset} written after {self._on_disk} bytes")
                _write_piece(fd, offset, piece, self._limits[2])
                with self._condition:
                    self._unwritten.popleft()
                    self._on_disk = offset + len(piece)

    # -- the extraction thread -----------------------------------------------------------------------

    def _run(self) -> None:
        reader = _FollowingReader(self)
        try:
            self._files = extract_stream(reader, self.destination, *self._limits)
        except _Abandoned:
            pass
        except BaseException as exc:  # handed to finish(); the download thread decides what to raise
            with self._condition:
                self._error = exc
                self._condition.notify_all()  # a download waiting for room stops at once
        finally:
            reader.close()

    def _next(self, position: int) -> tuple[int, memoryview | None]:
        """Waits for bytes past ``position``: ``(end, None)`` when they are in the file up to ``end``, else
        ``(end, piece)`` with the next waiting piece (ending at ``end``); ``(position, None)`` at the end."""
        with self._condition:
            while True:
                if self._abandoned:
                    raise _Abandoned()
                if position < self._in_file:
                    return self._in_file, None
                if self._pieces:
                    offset, piece = self._pieces.popleft()
                    self._condition.notify_all()  # room for the download's next piece
                    if offset != position:  # pragma: no cover - pieces follow the file's bytes
                        raise RuntimeError(f"piece at {offset} where {position} was expected")
                    return offset + len(piece), piece
                if self._download_done:
                    return position, None
                self._condition.wait()

    def _recycle(self, piece: memoryview) -> None:
        """Offers the buffer under a piece the extraction is done with to :meth:`piece_buffer`."""
        buffer = piece.obj
        try:
            piece.release()
        except BufferError:  # something still reads through it: not reused
            return
        if isinstance(buffer, bytearray):
            with self._condition:
                if len(self._spare) < _HANDOFF_PIECES:
                    self._spare.append(buffer)


def _unshared(buffer: bytearray) -> bool:
    """Whether no view of ``buffer`` is alive: CPython refuses to resize a bytearray that has one."""
    try:
        buffer.append(0)
    except BufferError:
        return False
    del buffer[-1]
    return True


def _write_piece(fd: int, offset: int, piece: memoryview, source: str) -> None:
    """Writes a received piece to the download file at ``offset``; a failure is a named ``DownloadError``."""
    try:
        while piece:
            written = os.pwrite(fd, piece, offset)
            piece, offset = piece[written:], offset + written
    except OSError as exc:
        raise DownloadError(
            f"Cannot write the download of {source!r} to its temp file: {exc.strerror or exc}."
        ) from None


class _DescriptorReader:
    """A file descriptor read front to back from offset 0 with ``pread`` (its own position is untouched)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._position = 0

    def read(self, size: int) -> bytes:
        data = os.pread(self._fd, size, self._position)
        self._position += len(data)
        return data


class _FollowingReader:
    """Reads the archive front to back as it downloads: from the pieces handed over (each written to the
    download file first), or from the file, never past what the download reported as written."""

    def __init__(self, owner: BackgroundExtraction) -> None:
        self._owner = owner
        self._fd: int | None = None
        self._position = 0
        self._piece = memoryview(b"")  # the rest of the current piece
        self._whole: memoryview | None = None  # the current piece, as handed over

    def read(self, size: int) -> bytes | memoryview:
        if not self._piece:
            if self._whole is not None:  # the views handed out of it are dropped by now (else not reused)
                self._piece = memoryview(b"")
                self._owner._recycle(self._whole)
                self._whole = None
            end, piece = self._owner._next(self._position)
            if piece is not None:
                # In the file before it is extracted (so before its buffer can be reused), unless the
                # download, waiting for room, wrote it already.
                self._owner._write_through(end)
                self._piece, self._whole = piece[:], piece
            elif end <= self._position:
                return b""
            else:
                return self._read_file(min(size, end - self._position))
        out = self._piece[:size]
        self._piece = self._piece[len(out):]
        self._position += len(out)
        return out

    def _read_file(self, size: int) -> bytes:
        if self._fd is None:
            with self._owner._condition:
                source = self._owner._source_fd
                self._fd = os.dup(source) if source is not None else None
            if self._fd is None:  # a download that did not hand its descriptor over: the path, never a link
                self._fd = open_regular_fd(self._owner.archive_path, "Archive", False, DownloadError)
        data = os.pread(self._fd, size, self._position)
        self._position += len(data)
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._piece = memoryview(b"")
        self._whole = None


def empty_directory(path: str) -> None:
    """Removes everything inside ``path`` (a private directory), leaving it empty."""
    import shutil

    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
