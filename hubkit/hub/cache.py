"""The module cache: one directory per handle, filled atomically, read without writing.

Layout of a cache root::

    <key>/                     key = sha1 of the normalised handle
      module/                  the module directory handed to the loader
      descriptor.json          what the entry holds: handle, source URL, archive sha256, fetch time
      complete.json            completion record, written last: every file with its size and checksum
    <key>.lock                 held while one process downloads the entry
    .<key>.<token>.part        a private download in progress (temp file next to the cache)
    .<key>.<token>.tmp/        a private entry being built, renamed to <key>/ when complete

A hit is an entry whose completion record is present and whose files all exist with their recorded
sizes: it costs a few ``stat`` calls, makes no network request and writes nothing, so a read-only cache
works. Anything else (a directory purged by the OS, a crash mid-rename) is downloaded again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from hubkit.errors import ResolveError
from hubkit.hub.config import HubConfig
from hubkit.hub.extract import ExtractedFile
from hubkit.hub.hashing import file_checksums
from hubkit.hub.lock import LockFile, LockHolder

__all__ = ["Cache", "CacheEntry", "InstallContext"]

_log = logging.getLogger("hubkit.hub")

MODULE_SUBDIR = "module"
DESCRIPTOR = "descriptor.json"
COMPLETE = "complete.json"
_KEY = re.compile(r"^[0-9a-f]{40}$")
_TEMP = re.compile(r"^\.([0-9a-f]{40})\.([0-9a-f]{32})\.(part|tmp|trash)$")


@dataclasses.dataclass
class InstallContext:
    """What a producer gets to fill a new cache entry.

    Attributes:
        module_dir: Empty private directory to fill with the module's files.
        part_path: Private temp file path next to the cache, for the download.
        touch: Call regularly while making progress, so waiters do not take the lock over.
        extracted: Set by a producer that already extracted the archive into ``module_dir`` (while
            downloading it) once the archive is verified: the files written.
    """

    module_dir: str
    part_path: str
    touch: Callable[[], None]
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
        """The handle the entry was fetched for ("?" if its descriptor is missing)."""
        return str(self.descriptor.get("handle", "?"))

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
        record = _read_json(os.path.join(entry, COMPLETE))
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            return None
        module_dir = os.path.join(entry, MODULE_SUBDIR)
        for relative, info in record["files"].items():
            try:
                if os.stat(os.path.join(module_dir, relative)).st_size != info["size"]:
                    return None
            except (OSError, KeyError, TypeError):
                return None
        return module_dir

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
        os.makedirs(self.root, exist_ok=True)
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

    def _install(self, key: str, handle: str, produce: Producer, lock: LockFile) -> str:
        token = lock.lock_id
        temp_entry = os.path.join(self.root, f".{key}.{token}.tmp")
        part_path = os.path.join(self.root, f".{key}.{token}.part")
        module_dir = os.path.join(temp_entry, MODULE_SUBDIR)
        os.makedirs(module_dir)
        try:
            files, extra = produce(InstallContext(module_dir, part_path, lock.touch))
            descriptor = {
                "handle": handle,
                "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **extra,
            }
            _write_json(os.path.join(temp_entry, DESCRIPTOR), descriptor)
            record = {"files": {f.path: _file_record(f) for f in files}}
            _write_json(os.path.join(temp_entry, COMPLETE), record)  # last: marks the entry complete
            return self._move_into_place(key, temp_entry)
        finally:
            _remove(part_path)
            _remove(temp_entry)

    def _move_into_place(self, key: str, temp_entry: str) -> str:
        final = self.entry_path(key)
        for _ in range(5):
            try:
                os.rename(temp_entry, final)
                return os.path.join(final, MODULE_SUBDIR)
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
        """Deletes the temp files of a lock holder that was taken over (it died or hung)."""
        if not holder.lock_id:
            return
        for suffix in ("part", "tmp"):
            _remove(os.path.join(self.root, f".{key}.{holder.lock_id}.{suffix}"))

    # -- maintenance (the ``hubkit cache`` commands) --------------------------------------------

    def entries(self) -> Iterator[CacheEntry]:
        """Yields every entry of the cache root, sorted by key."""
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(self.root, name)
            if not _KEY.match(name) or not os.path.isdir(path):
                continue
            descriptor = _read_json(os.path.join(path, DESCRIPTOR))
            yield CacheEntry(
                key=name,
                path=path,
                complete=self.lookup(name) is not None,
                descriptor=descriptor if isinstance(descriptor, dict) else {},
                size=_tree_size(path),
            )

    def remove(self, key: str) -> bool:
        """Removes an entry (first renamed aside, so it vanishes atomically). Returns whether it existed."""
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
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return removed
        for name in names:
            path = os.path.join(self.root, name)
            if _KEY.match(name) and os.path.isdir(path):
                if everything or self.lookup(name) is None:
                    self.remove(name)
                    removed.append(path)
            elif name.endswith(".lock") and _KEY.match(name[:-5]):
                lock = LockFile(path, self.config.lock_timeout)
                if lock.take_over_if_stale() is not None:
                    removed.append(path)
            elif (match := _TEMP.match(name)) is not None and not self._temp_in_use(match[1], match[2]):
                _remove(path)
                removed.append(path)
        return removed

    def _temp_in_use(self, key: str, token: str) -> bool:
        holder = LockFile(os.path.join(self.root, f"{key}.lock"), self.config.lock_timeout).holder()
        return holder is not None and holder.lock_id == token and not holder.is_dead()

    def verify(self, entry: CacheEntry) -> list[str]:
        """Re-checksums an entry's files against its completion record (sha256 or CRC-32, whichever it holds).

        Returns:
            One sentence per problem; empty when the entry is intact.
        """
        record = _read_json(os.path.join(entry.path, COMPLETE))
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
            return [f"Entry {entry.key} for {entry.handle!r} has no completion record (incomplete download)."]
        problems = []
        for relative, info in sorted(record["files"].items()):
            path = os.path.join(entry.module_dir, relative)
            try:
                found = file_checksums(path, sha256="sha256" in info, crc32="crc32" in info)
            except OSError:
                problems.append(f"Entry {entry.key} for {entry.handle!r} is missing file {relative!r}.")
                continue
            if found != (info.get("sha256"), info.get("crc32"), info.get("size")):
                problems.append(f"Entry {entry.key} for {entry.handle!r} has a modified file {relative!r}.")
        return problems


def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def _write_json(path: str, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _tree_size(path: str) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _file_record(file: ExtractedFile) -> dict[str, Any]:
    record: dict[str, Any] = {"size": file.size}
    if file.sha256 is not None:
        record["sha256"] = file.sha256
    if file.crc32 is not None:
        record["crc32"] = file.crc32
    return record

