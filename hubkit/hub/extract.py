"""Safe extraction of module archives: nothing is ever written outside the target directory.

Only regular files and directories are accepted. Absolute paths, ``..`` components, symlinks, hard
links, devices and FIFOs are refused, and so are archives that would expand beyond a size limit
(decompression bombs) or hold too many entries. Files are copied by hubkit itself (never
``TarFile.extract``), created with fixed permissions and ``O_EXCL`` so no entry can replace another.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import tarfile
import zlib

from hubkit.errors import DownloadError
from hubkit.hub.gzipstream import GunzipReader

__all__ = ["ExtractedFile", "UnsafeArchiveError", "merge_relative_path", "safe_extract"]

_COPY_CHUNK = 1 << 20


class UnsafeArchiveError(DownloadError):
    """An archive holds an entry hubkit refuses to extract."""


class ExtractedFile:
    """One regular file written by :func:`safe_extract`: its relative path, size and sha256."""

    __slots__ = ("path", "sha256", "size")

    def __init__(self, path: str, size: int, sha256: str) -> None:
        self.path = path
        self.size = size
        self.sha256 = sha256


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
    return "a special file"


def safe_extract(
    archive_path: str,
    destination: str,
    max_bytes: int,
    max_members: int = 100_000,
    source: str | None = None,
) -> list[ExtractedFile]:
    """Extracts a ``.tar.gz`` into the existing empty directory ``destination``.

    Args:
        archive_path: The archive file.
        destination: An empty directory owned by the caller (a private temp dir).
        max_bytes: Refuse the archive once its files add up to more than this many bytes.
        max_members: Refuse the archive once it has more than this many entries.
        source: How to name the archive in error messages (e.g. its URL); defaults to the path.

    Returns:
        The regular files written, in archive order.

    Raises:
        UnsafeArchiveError: An entry is unsafe or the archive is too large.
        DownloadError: The archive is corrupted or is not a ``.tar.gz``.
    """
    source = source or archive_path
    written: list[ExtractedFile] = []
    seen: set[str] = set()
    total = 0
    try:
        # GunzipReader (not tarfile's own "r|gz") checks every gzip member's CRC and length trailer, so a
        # truncated archive fails instead of extracting the members that happen to precede the cut.
        with (
            open(archive_path, "rb") as raw,
            io.BufferedReader(GunzipReader(raw, _COPY_CHUNK), _COPY_CHUNK) as unzipped,
            tarfile.open(fileobj=unzipped, mode="r|", bufsize=_COPY_CHUNK) as archive,
        ):
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
                if not member.isreg():
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
                written.append(_copy_member(archive, member, target, relative))
            while unzipped.read(_COPY_CHUNK):  # the rest (tar padding), up to and including the gzip trailer
                pass
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise UnsafeArchiveError(f"Archive {source!r} has entries that collide with each other ({exc}).") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a local filesystem problem (disk full, permissions): not the archive's fault
        raise DownloadError(f"Failed to extract archive {source!r}: it is corrupted or not a .tar.gz ({exc}).") from None
    return written


def _copy_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: str, relative: str) -> ExtractedFile:
    parent = os.path.dirname(target)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    reader = archive.extractfile(member)
    if reader is None:  # pragma: no cover - isreg() members always have data
        raise UnsafeArchiveError(f"Archive entry {member.name!r} has no data.")
    hasher = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    size = 0
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = reader.read(_COPY_CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if size != member.size:
        raise DownloadError(f"Archive entry {member.name!r} is truncated: {size} of {member.size} bytes.")
    return ExtractedFile(posixpath.normpath(relative), size, hasher.hexdigest())
