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

import os
import posixpath
import tarfile
import threading
import zlib
from typing import Any

from hubkit.errors import DownloadError
from hubkit.hub.gzipstream import GunzipReader

__all__ = [
    "BackgroundExtraction",
    "ExtractedFile",
    "UnsafeArchiveError",
    "extract_stream",
    "merge_relative_path",
    "safe_extract",
]

_READ_CHUNK = 1 << 20  # compressed bytes read at a time
_PIECE = 4 << 20  # most decompressed bytes held at once (memory stays flat whatever the archive size)
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
    """

    __slots__ = ("crc32", "path", "sha256", "size")

    def __init__(self, path: str, size: int, sha256: str | None = None, crc32: int | None = None) -> None:
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.crc32 = crc32


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


class _ForwardStream:
    """The decompressed archive as the forward-only file ``tarfile`` reads headers from.

    ``tarfile`` (mode ``"r:"``) only reads, tells and seeks forward past member data; :meth:`view`
    hands member data out without copying it.
    """

    def __init__(self, gunzip: GunzipReader, limit: int, source: str) -> None:
        self._gunzip = gunzip
        self._piece = memoryview(b"")
        self._position = 0
        self._limit = limit  # most decompressed bytes the whole stream may hold (files + tar overhead)
        self._source = source

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
            self._piece = memoryview(self._gunzip.read_piece(_PIECE))
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

    def copy_to(self, fd: int, size: int) -> int | None:
        """Writes the next ``size`` bytes to ``fd``; returns their CRC-32 (``None``: see ``GunzipReader.copy_to``)."""
        crc = None
        self._position += size
        if self._piece:  # left over from reading the header
            part = self._piece[:size]
            self._piece = self._piece[len(part) :]
            size -= len(part)
            crc = zlib.crc32(part)
            while part:
                part = part[os.write(fd, part) :]
        return self._gunzip.copy_to(fd, size, crc)

    def drain(self) -> None:
        """Reads to the end of the gzip stream (tar padding, then every member's checked trailer)."""
        self._position += len(self._piece)
        self._piece = memoryview(b"")
        while piece := self._gunzip.read_piece(_PIECE):
            self._position += len(piece)
            if self._position > self._limit:
                raise UnsafeArchiveError(
                    f"Archive {self._source!r} has more than {self._limit} decompressed bytes after its last "
                    "entry; refusing it as a possible decompression bomb."
                )


def safe_extract(
    archive_path: str,
    destination: str,
    max_bytes: int,
    max_members: int = 100_000,
    source: str | None = None,
    check_crc: bool = True,
) -> list[ExtractedFile]:
    """Extracts a ``.tar.gz`` into the existing empty directory ``destination``.

    Args:
        archive_path: The archive file.
        destination: An empty directory owned by the caller (a private temp dir).
        max_bytes: Refuse the archive once its files add up to more than this many bytes.
        max_members: Refuse the archive once it has more than this many entries.
        source: How to name the archive in error messages (e.g. its URL); defaults to the path.
        check_crc: Check each gzip member's CRC-32. Pass ``False`` only when the archive's pinned sha256
            was verified, or will be before anything extracted is used (it then proves the content).

    Returns:
        The regular files written, in archive order.

    Raises:
        UnsafeArchiveError: An entry is unsafe or the archive is too large.
        DownloadError: The archive is corrupted or is not a ``.tar.gz``.
    """
    with open(archive_path, "rb", buffering=0) as raw:
        return extract_stream(raw, destination, max_bytes, max_members, source or archive_path, check_crc)


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
        DownloadError: The archive is corrupted or is not a ``.tar.gz``.
    """
    written: list[ExtractedFile] = []
    seen: set[str] = set()
    total = 0
    # GunzipReader (not tarfile's own "r|gz") checks every gzip member's length (and CRC) trailer, so a
    # truncated archive fails instead of extracting the members that happen to precede the cut.
    # Besides the files' own bytes, a tar stream holds a 512-byte header and up to 511 bytes of padding per
    # entry (a few headers for long names), and the end-of-archive blocks.
    limit = max_bytes + max_members * _TAR_OVERHEAD_PER_ENTRY + _MAX_HEADER_BYTES
    stream = _ForwardStream(GunzipReader(raw, _READ_CHUNK, check_crc), limit, source)
    try:
        with tarfile.open(fileobj=stream, mode="r:") as archive:  # type: ignore[call-overload]
            for count, member in enumerate(archive, start=1):
                if count > max_members:
                    raise UnsafeArchiveError(f"Archive {source!r} has more than {max_members} entries; refusing it.")
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
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a local filesystem problem (disk full, permissions): not the archive's fault
        raise DownloadError(f"Failed to extract archive {source!r}: it is corrupted or not a .tar.gz ({exc}).") from None
    return written


def _copy_member(stream: _ForwardStream, member: tarfile.TarInfo, target: str, relative: str) -> ExtractedFile:
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    fd = os.open(target, _OPEN_FLAGS, 0o644)
    try:
        crc = stream.copy_to(fd, member.size)
        if crc is None:  # not computed on the way (CRC checks off, file not alone in its member): read it back
            crc = _file_crc32(fd, member.size)
    finally:
        os.close(fd)
    return ExtractedFile(posixpath.normpath(relative), member.size, crc32=crc)


def _file_crc32(fd: int, size: int) -> int:
    crc = offset = 0
    while offset < size:
        chunk = os.pread(fd, min(_PIECE, size - offset), offset)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return crc


class _Abandoned(Exception):
    """Raised inside the extraction thread when its extraction is no longer wanted."""


class BackgroundExtraction:
    """Extracts an archive in a second thread while another thread is still downloading it.

    The download thread writes the archive to ``archive_path`` and reports after every write how many
    bytes the file holds (:meth:`advance`); the extraction thread reads the file only up to there,
    waiting for more. zlib, CRC-32 and file I/O release the GIL, so the two threads use two cores.
    (Handing the received pieces over in memory instead, through a bounded pool of buffers, was
    measured and did not win: see docs/performance_notes.md.)
    Nothing here decides whether the archive is trusted: the caller verifies the download's sha256 and
    size and only then uses what :meth:`finish` returns; on any failure the destination is thrown away.

    Use as a context manager: leaving the block stops and joins the thread, so nothing writes into the
    destination afterwards.

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
        self._available = 0
        self._download_done = False
        self._abandoned = False
        self._files: list[ExtractedFile] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hubkit-extract", daemon=True)
        self._thread.start()

    def __enter__(self) -> BackgroundExtraction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abandon()

    # -- called by the download thread ---------------------------------------------------------------

    def advance(self, available: int) -> None:
        """Reports that the archive file now holds ``available`` bytes, all written to the OS."""
        with self._condition:
            self._available = available
            self._condition.notify()

    def restart(self) -> None:
        """The download starts over from byte 0: stop following it (:meth:`finish` extracts afterwards)."""
        self.abandon()

    def abandon(self) -> None:
        """Stops the extraction thread and waits for it; what it wrote stays for the caller to delete."""
        with self._condition:
            self._abandoned = True
            self._condition.notify()
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
            self._condition.notify()
        self._thread.join()
        if self._abandoned:  # the download started over: extract the finished file from scratch
            _empty_directory(self.destination)
            return safe_extract(self.archive_path, self.destination, *self._limits)
        if self._error is not None:
            raise self._error
        assert self._files is not None  # the thread ended without abandonment: files or an error
        return self._files

    # -- the extraction thread -----------------------------------------------------------------------

    def _run(self) -> None:
        reader = _GrowingFileReader(self)
        try:
            self._files = extract_stream(reader, self.destination, *self._limits)
        except _Abandoned:
            pass
        except BaseException as exc:  # handed to finish(); the download thread decides what to raise
            self._error = exc
        finally:
            reader.close()

    def _wait_for(self, position: int) -> int:
        """Blocks until the file holds more than ``position`` bytes; returns the count (``position`` at the end)."""
        with self._condition:
            while not self._abandoned and self._available <= position and not self._download_done:
                self._condition.wait()
            if self._abandoned:
                raise _Abandoned()
            return self._available


class _GrowingFileReader:
    """Reads the archive file front to back, never past what the download reported as written."""

    def __init__(self, owner: BackgroundExtraction) -> None:
        self._owner = owner
        self._fd: int | None = None
        self._position = 0

    def read(self, size: int) -> bytes:
        available = self._owner._wait_for(self._position)
        if available <= self._position:
            return b""
        if self._fd is None:
            self._fd = os.open(self._owner.archive_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        data = os.pread(self._fd, min(size, available - self._position), self._position)
        self._position += len(data)
        return data

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _empty_directory(path: str) -> None:
    import shutil

    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
