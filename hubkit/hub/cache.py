"""The module cache: one directory per handle, filled atomically, read without writing.

Layout of a cache root::

    <key>/                     key = sha1 of the normalised handle
      module/                  the module directory handed to the loader
      descriptor.json          what the entry holds: handle, source URL, archive sha256, fetch time,
                               and the host and pid of the process that downloaded it
      complete.json            completion record, written last: every file with its size and checksum
    <key>.lock                 held while one process downloads the entry
    .<key>.<token>.part        a private download in progress (temp file next to the cache)
    .<key>.<token>.info        what the server said about it (ETag, Last-Modified): lets a download resume
    .<key>.<token>.tmp/        a private entry being built, renamed to <key>/ when complete
    .<key>.resume.part/.info   an interrupted download, continued by the next process that installs <key>

A hit is an entry whose completion record is present and whose files all exist with their recorded
sizes: it costs a few ``stat`` calls, makes no network request and writes nothing, so a read-only cache
works. Anything else (a directory purged by the OS, a crash mid-rename) is downloaded again.

The cache directory may be shared with other users, so everything read from it (lock files,
descriptors, completion records) is untrusted: only regular files are read, with a size bound and a
depth bound; a completion record's file names must be plain relative paths; and no path that is deleted
is ever derived from file contents (only from the entry key and this process's own tokens, each checked
against a strict pattern). An entry is renamed into place only once every file its completion record
lists is present in the private temp entry with its recorded size, so a process whose lock was taken
over while it stalled can never install a half-extracted module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from hubkit.errors import ResolveError
from hubkit.format.bounded_io import read_json_file
from hubkit.hub.config import HubConfig
from hubkit.hub.extract import ExtractedFile
from hubkit.hub.hashing import file_checksums
from hubkit.hub.lock import LockFile, LockHolder, hostname

__all__ = ["Cache", "CacheEntry", "InstallContext"]

_log = logging.getLogger("hubkit.hub")

MODULE_SUBDIR = "module"
DESCRIPTOR = "descriptor.json"
COMPLETE = "complete.json"
_KEY = re.compile(r"[0-9a-f]{40}")
_TOKEN = re.compile(r"[0-9a-f]{32}")
_TEMP = re.compile(r"\.([0-9a-f]{40})\.([0-9a-f]{32})\.(part|info|tmp|trash)")
_RESUME = re.compile(r"\.([0-9a-f]{40})\.resume\.(part|info)")
_MAX_RECORD_BYTES = 64 << 20  # a completion record lists every file of a module: generous, still bounded
_MAX_DESCRIPTOR_BYTES = 16 << 20


@dataclasses.dataclass
class InstallContext:
    """What a producer gets to fill a new cache entry.

    Attributes:
        module_dir: Empty private directory to fill with the module's files.
        part_path: Private temp file path next to the cache, for the download. It may already hold the
            start of an interrupted download of the same entry, described by ``info_path``.
        info_path: Private temp file path for what the server said about the download (its validators),
            so that a later process can resume it.
        touch: Call regularly while making progress, so waiters do not take the lock over.
        extracted: Set by a producer that already extracted the archive into ``module_dir`` (while
            downloading it) once the archive is verified: the files written.
    """

    module_dir: str
    part_path: str
    touch: Callable[[], None]
    info_path: str = ""
    extracted: list[ExtractedFile] | None = None


@dataclasses.dataclass
class CacheEntry:
    """One cache entry as listed by :meth:`Cache.entries`."""

    key: str
    path: str
    complete: bool
    descriptor: dict[str, Any]
    size: int

    @property
    def handle(self) -> str:
        """The handle the entry was fetched for ("?" if its descriptor is missing).

        The descriptor is untrusted (a shared cache): control characters (terminal escapes) become "?"
        and the text is cut at 2,000 characters, so listing a cache cannot rewrite the user's terminal.
        """
        handle = self.descriptor.get("handle", "?")
        text = handle if isinstance(handle, str) else "?"
        return "".join(c if c.isprintable() else "?" for c in text[:2000])

    @property
    def module_dir(self) -> str:
        """The module directory inside the entry."""
        return os.path.join(self.path, MODULE_SUBDIR)


Producer = Callable[[InstallContext], "tuple[list[ExtractedFile], dict[str, Any]]"]


class Cache:
    """A cache root and the protocol to look up, fill and maintain its entries.

    Args:
        config: Hub settings (``cache_dir``, ``lock_timeout``, ``lock_poll``).
    """

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.root = config.cache_dir
        self.sleep: Callable[[float], None] = time.sleep

    def entry_path(self, key: str) -> str:
        """Returns the directory of the entry with this key."""
        return os.path.join(self.root, key)

    def lookup(self, key: str) -> str | None:
        """Returns the module directory of a complete entry, or ``None``. Reads only; never writes.

        Args:
            key: The entry key (see :func:`hubkit.hub.handles.cache_key`).
        """
        return self.lookup_in(self.root, key)

    @staticmethod
    def lookup_in(root: str, key: str) -> str | None:
        """:meth:`lookup` in the cache rooted at ``root`` (the hot path of a cache hit)."""
        entry = os.path.join(root, key)
        module_dir = os.path.join(entry, MODULE_SUBDIR)
        return module_dir if _complete(module_dir, _read_record(os.path.join(entry, COMPLETE))) else None

    def get_or_install(self, key: str, handle: str, produce: Producer) -> str:
        """Returns the entry's module directory, producing it under the lock when it is missing.

        Args:
            key: The entry key.
            handle: The normalised handle (recorded in the descriptor, used in messages).
            produce: Fills an :class:`InstallContext`; returns the files written and extra descriptor fields.

        Returns:
            The module directory of the complete entry.
        """
        hit = self.lookup(key)
        if hit is not None:
            return hit
        self._make_root()
        lock = LockFile(os.path.join(self.root, f"{key}.lock"), self.config.lock_timeout)
        waiting_logged = False
        while True:
            hit = self.lookup(key)
            if hit is not None:
                return hit
            try:
                acquired = lock.try_acquire()
            except OSError as exc:  # e.g. a filesystem without O_EXCL: proceed, correctness does not need the lock
                _log.warning("Could not create lock %s (%s); downloading without it.", lock.path, exc)
                acquired = True
            if acquired:
                try:
                    hit = self.lookup(key)  # someone may have finished between our look and the lock
                    if hit is not None:
                        return hit
                    return self._install(key, handle, produce, lock)
                finally:
                    lock.release()
            taken = lock.take_over_if_stale()
            if taken is not None:
                self._remove_leftovers(key, taken)
                continue
            if not waiting_logged:
                _log.warning("Waiting for %r, which another process is downloading (lock %s held by %r).",
                             handle, lock.path, lock.holder())
                waiting_logged = True
            self.sleep(self.config.lock_poll)

    def _make_root(self) -> None:
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            raise ResolveError(
                f"The cache directory {self.root!r} cannot be created ({exc.strerror or exc}); set HUBKIT_CACHE_DIR "
                "to a directory you can write to."
            ) from None
        if not os.path.isdir(self.root):  # pragma: no cover - makedirs raises for a file already
            raise ResolveError(f"The cache directory {self.root!r} is not a directory; set HUBKIT_CACHE_DIR to one.")

    def _install(self, key: str, handle: str, produce: Producer, lock: LockFile) -> str:
        token = lock.lock_id
        if not (_KEY.fullmatch(key) and _TOKEN.fullmatch(token)):  # pragma: no cover - both made by hubkit
            raise ResolveError(f"Invalid cache key {key!r}.")
        temp_entry = os.path.join(self.root, f".{key}.{token}.tmp")
        part_path = os.path.join(self.root, f".{key}.{token}.part")
        info_path = os.path.join(self.root, f".{key}.{token}.info")
        module_dir = os.path.join(temp_entry, MODULE_SUBDIR)
        try:
            # Private while it is built (in a cache shared by a group, a group-writable temp entry let others
            # plant links that the extraction's directories and the records would follow); readable once done.
            os.mkdir(temp_entry, 0o700)
            os.mkdir(module_dir, 0o755)
            made = os.stat(temp_entry)
        except OSError as exc:
            raise ResolveError(f"Cannot create the temp entry {temp_entry!r} in the cache: {exc.strerror or exc}.") from None
        self._adopt_resumable(key, part_path, info_path)
        keep_part = False
        try:
            files, extra = produce(InstallContext(module_dir, part_path, lock.touch, info_path=info_path))
            descriptor = {
                "handle": handle,
                "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "host": hostname(),
                "pid": os.getpid(),
                **extra,
            }
            record = {"files": {f.path: _file_record(f) for f in files}}
            try:
                _write_json(os.path.join(temp_entry, DESCRIPTOR), descriptor)
                _write_json(os.path.join(temp_entry, COMPLETE), record)  # last: marks the entry complete
            except OSError as exc:
                raise ResolveError(f"Cannot write the cache entry {temp_entry!r}: {exc.strerror or exc}.") from None
            # Our temp entry must still be the directory we made, holding every recorded file: a process
            # whose lock was taken over while it stalled may have had it deleted (and recreated parts of it).
            if not _same_directory(temp_entry, made) or not _complete(module_dir, record):
                raise ResolveError(
                    f"The download of {handle!r} was taken over by another process while this one stalled, and its "
                    "temp entry was removed; try again (the other process may have installed it already)."
                )
            _make_readable(temp_entry, made)
            return self._move_into_place(key, temp_entry)
        except BaseException as exc:
            keep_part = bool(getattr(exc, "resumable", False)) or isinstance(exc, KeyboardInterrupt)
            raise
        finally:
            if keep_part:
                self._keep_resumable(key, part_path, info_path)
            _remove_soon(part_path)
            _remove(info_path)
            _remove(temp_entry)

    def _resume_paths(self, key: str) -> tuple[str, str]:
        return os.path.join(self.root, f".{key}.resume.part"), os.path.join(self.root, f".{key}.resume.info")

    def _adopt_resumable(self, key: str, part_path: str, info_path: str) -> None:
        """Takes over an interrupted download of this entry (atomically: one process gets it)."""
        resume_part, resume_info = self._resume_paths(key)
        try:
            os.rename(resume_info, info_path)
        except OSError:
            return
        try:
            os.rename(resume_part, part_path)
        except OSError:
            _remove(info_path)

    def _keep_resumable(self, key: str, part_path: str, info_path: str) -> None:
        """Leaves a download that broke off for the next process to continue (only with its validators)."""
        resume_part, resume_info = self._resume_paths(key)
        try:
            if os.lstat(part_path).st_size == 0 or not os.path.isfile(info_path):
                return
            os.rename(part_path, resume_part)
            os.rename(info_path, resume_info)
        except OSError:
            return

    def _move_into_place(self, key: str, temp_entry: str) -> str:
        final = self.entry_path(key)
        for _ in range(5):
            try:
                os.rename(temp_entry, final)
                hit = self.lookup(key)
                if hit is None:
                    raise ResolveError(f"The new cache entry {final!r} was modified while it was moved into place.")
                return hit
            except OSError:
                hit = self.lookup(key)
                if hit is not None:  # another process installed it first: keep theirs
                    return hit
                # An incomplete leftover (purged by the OS, or a crash): move it aside atomically, then retry.
                trash = os.path.join(self.root, f".{key}.{uuid.uuid4().hex}.trash")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(final, trash)
                _remove(trash)
        raise ResolveError(f"Could not move the new cache entry into place at {final!r}.")

    def _remove_leftovers(self, key: str, holder: LockHolder) -> None:
        """Deletes the temp files of a lock holder that was taken over (it died or hung).

        The holder's id comes from the lock file (untrusted): it was checked to be 32 hex digits when the
        lock was parsed, and is checked again here, so the paths built from it stay in the cache root.
        A dead holder's partial download is kept for the next install to resume; a live one (it hung)
        may still write to it, so it is deleted. Each path is first renamed aside, so a holder that wakes
        up can no longer rename it into place, then removed.
        """
        token = holder.lock_id
        if not (_KEY.fullmatch(key) and _TOKEN.fullmatch(token)):
            return
        prefix = os.path.join(self.root, f".{key}.{token}")
        if holder.is_dead():
            self._keep_resumable(key, f"{prefix}.part", f"{prefix}.info")
        for suffix in ("part", "info", "tmp"):
            trash = os.path.join(self.root, f".{key}.{uuid.uuid4().hex}.trash")
            try:
                os.rename(f"{prefix}.{suffix}", trash)
            except OSError:
                continue
            _remove(trash)

    # -- maintenance (the ``hubkit cache`` commands) --------------------------------------------

    def entries(self) -> Iterator[CacheEntry]:
        """Yields every entry of the cache root, sorted by key.

        Raises:
            ResolveError: The cache root exists but is not a readable directory.
        """
        names = self._names()
        for name in names:
            path = os.path.join(self.root, name)
            if not _KEY.fullmatch(name) or not os.path.isdir(path) or os.path.islink(path):
                continue
            descriptor = read_json_file(os.path.join(path, DESCRIPTOR), _MAX_DESCRIPTOR_BYTES, default=None)
            yield CacheEntry(
                key=name,
                path=path,
                complete=self.lookup(name) is not None,
                descriptor=descriptor if isinstance(descriptor, dict) else {},
                size=_tree_size(path),
            )

    def remove(self, key: str) -> bool:
        """Removes an entry (first renamed aside, so it vanishes atomically). Returns whether it existed."""
        if not _KEY.fullmatch(key):
            raise ResolveError(f"Invalid cache key {key!r}; expected 40 hex digits.")
        trash = os.path.join(self.root, f".{key}.{uuid.uuid4().hex}.trash")
        try:
            os.rename(self.entry_path(key), trash)
        except FileNotFoundError:
            return False
        _remove(trash)
        return True

    def prune(self, everything: bool = False) -> list[str]:
        """Removes incomplete entries, abandoned temp files and stale locks (all entries if ``everything``).

        Returns:
            The paths removed.
        """
        removed: list[str] = []
        names = self._names()
        for name in names:
            path = os.path.join(self.root, name)
            if _KEY.fullmatch(name) and os.path.isdir(path):
                if everything or self.lookup(name) is None:
                    self.remove(name)
                    removed.append(path)
            elif name.endswith(".lock") and _KEY.fullmatch(name[:-5]):
                lock = LockFile(path, self.config.lock_timeout)
                try:
                    taken = lock.take_over_if_stale()
                except ResolveError:  # a directory or FIFO planted at a lock path: not ours, named by `check`
                    continue
                if taken is not None:
                    removed.append(path)
            elif ((match := _TEMP.fullmatch(name)) is not None and not self._temp_in_use(match[1], match[2])) or (
                _RESUME.fullmatch(name) is not None and (everything or not self._key_locked(name[1:41]))
            ):
                _remove(path)
                removed.append(path)
        return removed

    def _names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise ResolveError(f"The cache directory {self.root!r} is not a directory; set HUBKIT_CACHE_DIR to one.") from None
        except OSError as exc:
            raise ResolveError(f"The cache directory {self.root!r} cannot be listed: {exc.strerror or exc}.") from None

    def _temp_in_use(self, key: str, token: str) -> bool:
        try:
            holder = LockFile(os.path.join(self.root, f"{key}.lock"), self.config.lock_timeout).holder()
        except ResolveError:
            return False
        return holder is not None and holder.lock_id == token and not holder.is_dead()

    def _key_locked(self, key: str) -> bool:
        return os.path.lexists(os.path.join(self.root, f"{key}.lock"))

    def verify(self, entry: CacheEntry) -> list[str]:
        """Re-checksums an entry's files against its completion record (sha256 or CRC-32, whichever it holds).

        Returns:
            One sentence per problem; empty when the entry is intact.
        """
        record = _read_record(os.path.join(entry.path, COMPLETE))
        if record is None:
            return [f"Entry {entry.key} for {entry.handle!r} has no valid completion record (incomplete download)."]
        problems = []
        for relative, info in sorted(record["files"].items()):
            path = os.path.join(entry.module_dir, relative)
            try:
                found = file_checksums(path, sha256="sha256" in info, crc32="crc32" in info)
            except (OSError, ResolveError):
                problems.append(f"Entry {entry.key} for {entry.handle!r} is missing file {relative!r}.")
                continue
            if found == (info.get("sha256"), info.get("crc32"), info.get("size")):
                continue
            if info.get("crc32_stated") and found[0::2] == (info.get("sha256"), info.get("size")):
                problems.append(
                    f"Entry {entry.key} for {entry.handle!r} has a file {relative!r} whose CRC-32 differs from the one "
                    "its sha256-pinned archive stated (modified since the install, or the archive stated a wrong one)."
                )
            else:
                problems.append(f"Entry {entry.key} for {entry.handle!r} has a modified file {relative!r}.")
        return problems


def _read_record(path: str) -> dict[str, Any] | None:
    """Reads a completion record; ``None`` unless it is well-formed (every name a plain relative path).

    This is the hot path of a cache hit, so the structure is checked exactly (which also bounds its
    depth) rather than walked generically.
    """
    record = read_json_file(path, _MAX_RECORD_BYTES, default=None, max_depth=0)
    files = record.get("files") if type(record) is dict else None
    if type(files) is not dict:
        return None
    for relative, info in files.items():
        if type(info) is not dict or not _valid_file_record(info) or _RELATIVE.fullmatch(relative) is None:
            return None
    return record


_RELATIVE = re.compile(r"(?:(?!\.\.?/)[^/\\\x00]+/)*(?!\.\.?$)[^/\\\x00]+")  # a/b/c: no "", ".", "..", "\\", NUL
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _valid_file_record(info: dict[str, Any]) -> bool:
    size, crc, digest = info.get("size"), info.get("crc32", 0), info.get("sha256")
    return (
        type(info.get("crc32_stated", False)) is bool
        and type(size) is int and 0 <= size < 1 << 62
        and type(crc) is int and 0 <= crc < 1 << 32
        and (digest is None or (type(digest) is str and _HEX64.fullmatch(digest) is not None))
    )


def _complete(module_dir: str, record: dict[str, Any] | None) -> bool:
    """Whether every file ``record`` lists is a regular file under ``module_dir`` with its recorded size."""
    if record is None:
        return False
    for relative, info in record["files"].items():
        try:
            found = os.lstat(os.path.join(module_dir, relative))
        except (OSError, ValueError):
            return False
        if not stat.S_ISREG(found.st_mode) or found.st_size != info["size"]:
            return False
    return True


def _same_directory(path: str, made: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(now.st_mode) and (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino)


def _make_readable(path: str, made: os.stat_result) -> None:
    """Opens up the finished temp entry (0o755) through a descriptor of the very directory this process made."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ResolveError(f"The temp entry {path!r} was replaced while it was completed ({exc.strerror or exc}).") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (made.st_dev, made.st_ino):
            raise ResolveError(f"The temp entry {path!r} was replaced while it was completed.")
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)


def _write_json(path: str, value: Any) -> None:
    # Not fsynced: a record lost or torn by a power loss only makes the entry incomplete (downloaded again),
    # and an fsync here waited for the journal to commit the whole download (~40 ms per install).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(path, flags, 0o644), "w", encoding="utf-8") as f:  # a new file, never through a link
        json.dump(value, f, indent=1, sort_keys=True)


def _remove(path: str) -> None:
    """Deletes the file or directory tree ``path`` (never following links); errors are ignored.

    Trees are removed by :func:`_remove_tree`, not ``shutil.rmtree``, which recurses once per level: a planted
    tree 1,200 levels deep made it raise ``RecursionError`` (not swallowed by ``ignore_errors``).
    """
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return
    if is_dir:
        with contextlib.suppress(OSError):
            _remove_tree(path)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


_MAX_TREE_DEPTH = 256  # directory levels open at once while removing or measuring a tree
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _clear_files(fd: int) -> list[str]:
    """Unlinks every entry of the directory ``fd`` that is not a directory (links included, never followed);
    returns the names of its subdirectories."""
    subdirs = []
    with os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return subdirs


def _remove_tree(path: str) -> None:
    """Deletes the directory tree ``path`` without recursion and without following links.

    Every directory is opened relative to its parent's descriptor with ``O_NOFOLLOW`` (a directory replaced by a
    link meanwhile is unlinked, its target untouched). At most :data:`_MAX_TREE_DEPTH` levels are open at once:
    a directory deeper than that is first moved up to the top of the tree (a rename within the tree, which is
    private to this process: a renamed-aside entry), so a tree of any depth is removed with bounded descriptors.
    """
    root = os.open(path, _DIR_FLAGS)
    stack: list[tuple[int, str, list[str]]] = []  # (descriptor, name in its parent, subdirectories left)
    try:
        stack.append((root, path, _clear_files(root)))
        while stack:
            fd, done, pending = stack[-1]
            if not pending:
                stack.pop()
                os.close(fd)
                if stack:  # the top directory itself is removed by its path below
                    with contextlib.suppress(FileNotFoundError):
                        os.rmdir(done, dir_fd=stack[-1][0])
                continue
            name = pending.pop()
            if len(stack) >= _MAX_TREE_DEPTH:  # too deep to descend: move it to the top, removed from there
                moved = f".deep.{uuid.uuid4().hex}"
                os.rename(name, moved, src_dir_fd=fd, dst_dir_fd=root)
                stack[0][2].append(moved)
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError:  # no longer a directory (a link or a file put there meanwhile): unlink it
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)
                continue
            stack.append((child, name, []))
            stack[-1][2].extend(_clear_files(child))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    os.rmdir(path)


_REMOVE_LATER_BYTES = 16 << 20  # a larger temp file is deleted in the background


def _remove_soon(path: str) -> None:
    """Deletes a private temp file, a large one in a background thread.

    Freeing a large download's page cache takes ~50 ms per 200 MB, which ``resolve`` need not wait for.
    The thread is not a daemon, so the interpreter waits for it at exit; a file it did not get to (the
    process was killed) is removed by ``hubkit cache prune``, like any abandoned temp file.
    """
    try:
        size = os.lstat(path).st_size
    except OSError:
        return
    if size < _REMOVE_LATER_BYTES:
        _remove(path)
        return
    import threading  # lazy: a cache hit never needs it

    threading.Thread(target=_remove, args=(path,), name="hubkit-remove", daemon=False).start()


def _tree_size(path: str) -> int:
    """Bytes of the files of the tree ``path``, never following links and without recursion (``os.walk`` recursed
    once per level). Only the first :data:`_MAX_TREE_DEPTH` levels are measured: hubkit never makes deeper trees
    (extraction refuses 128 levels), and a planted deeper one must not make ``hubkit cache ls`` fail."""
    total = 0
    pending = [(path, 0)]
    while pending:
        directory, depth = pending.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if depth + 1 < _MAX_TREE_DEPTH:
                                pending.append((entry.path, depth + 1))
                        else:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _file_record(file: ExtractedFile) -> dict[str, Any]:
    record: dict[str, Any] = {"size": file.size}
    if file.sha256 is not None:
        record["sha256"] = file.sha256
    if file.crc32 is not None:
        record["crc32"] = file.crc32
        if file.crc32_stated:
            record["crc32_stated"] = True
    return record

