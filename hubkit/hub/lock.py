"""A lock file that saves duplicate downloads; correctness never depends on it.

The lock is a file created with ``O_EXCL`` holding its holder's host, pid and a unique id. The holder
touches it while it makes progress. A waiter takes the lock over at once when the holder is a dead
process on this host, and after ``stale_after`` seconds without progress otherwise. Two processes may
still end up downloading the same thing (e.g. both take over a stale lock); that only costs bandwidth,
because every download goes to a private temp path that is renamed into place atomically.

A lock file lives in a directory others can write to, so its content is untrusted: it is read as a
regular file only (never a FIFO, device, directory or link), at most 4 KiB of it, and a holder is
accepted only when its host, pid and id match strict patterns. Nothing read from it ever becomes part of
a path. "No progress" is measured twice, so that a clock that is off cannot make a lock eternal: by the
file's age (its mtime against this host's clock) and by this process's own monotonic clock, since it
first saw the file's current state (a lock whose mtime lies in the future still goes stale).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import time
import uuid

from hubkit.errors import ResolveError

__all__ = ["LockFile", "LockHolder", "hostname", "pid_alive"]

_log = logging.getLogger("hubkit.hub")

_MAX_LOCK_BYTES = 4096
_LOCK_ID = re.compile(r"[0-9a-f]{32}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_MAX_PID = 1 << 31
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def hostname() -> str:
    """Returns this host's name (as lock files and cache descriptors record it)."""
    import socket  # lazy: keeps `import hubkit` fast

    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Returns whether a process with this pid exists on this host."""
    if not 0 < pid < _MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LockHolder:
    """What a lock file says about its holder."""

    __slots__ = ("host", "lock_id", "pid")

    def __init__(self, host: str, pid: int, lock_id: str) -> None:
        self.host = host
        self.pid = pid
        self.lock_id = lock_id

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """Reads a holder from lock file contents; ``None`` if they are unreadable (being written) or invalid.

        The host must look like a host name, the pid be a positive int and the id 32 lowercase hex digits
        (what :meth:`LockFile.try_acquire` writes); anything else is not a holder.

        >>> LockHolder.parse('{"host": "h", "pid": 7, "id": "' + "a" * 32 + '"}')
        LockHolder(host='h', pid=7, id='aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')
        >>> LockHolder.parse('{"host": "h", "pid": 7, "id": "../../home"}') is None
        True
        """
        if len(text) > _MAX_LOCK_BYTES:
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        host, pid, lock_id = data.get("host"), data.get("pid"), data.get("id")
        if not (isinstance(host, str) and _HOST.fullmatch(host)):
            return None
        if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < _MAX_PID):
            return None
        if not (isinstance(lock_id, str) and _LOCK_ID.fullmatch(lock_id)):
            return None
        return cls(host, pid, lock_id)

    def is_dead(self) -> bool:
        """Returns whether the holder is known to be dead: a missing process on this very host."""
        return self.host == hostname() and not pid_alive(self.pid)

    def __repr__(self) -> str:
        return f"LockHolder(host={self.host!r}, pid={self.pid}, id={self.lock_id!r})"


class LockFile:
    """One lock file path, acquired at most once by this object.

    Args:
        path: The lock file path.
        stale_after: Seconds without progress after which a live holder's lock is taken over.
    """

    def __init__(self, path: str, stale_after: float) -> None:
        self.path = path
        self.stale_after = stale_after
        self.lock_id = uuid.uuid4().hex
        self.held = False
        self._last_touch = 0.0
        self._seen: tuple[object, float] | None = None  # (state of the file, monotonic time first seen)

    def try_acquire(self) -> bool:
        """Creates the lock file if nobody holds it.

        Returns:
            ``True`` if this object now holds the lock.

        Raises:
            OSError: The lock file could not be created for a reason other than being held.
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileExistsError:
            self._check_regular()
            return False
        payload = {"host": hostname(), "pid": os.getpid(), "id": self.lock_id, "created": time.time()}
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        self.held = True
        self._last_touch = time.monotonic()
        return True

    def _not_a_lock(self, what: str) -> ResolveError:
        return ResolveError(
            f"Lock path {self.path!r} is {what}, not a lock file; remove it (hubkit only ever creates regular files there)."
        )

    def _check_regular(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ResolveError(f"Lock path {self.path!r} cannot be examined: {exc.strerror or exc}.") from None
        if not stat.S_ISREG(mode):
            raise self._not_a_lock(_kind(mode))

    def holder(self) -> LockHolder | None:
        """Returns the current holder, or ``None`` if the file is gone, half-written or invalid.

        Raises:
            ResolveError: The lock path is not a regular file (a directory, FIFO, device or link).
        """
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._check_regular()  # a link (ELOOP) or a directory (EISDIR) is named as such
            raise ResolveError(f"Lock file {self.path!r} cannot be read: {exc.strerror or exc}.") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise self._not_a_lock(_kind(mode))
            data = os.read(fd, _MAX_LOCK_BYTES + 1)
        except OSError as exc:
            raise ResolveError(f"Lock file {self.path!r} cannot be read: {exc.strerror or exc}.") from None
        finally:
            os.close(fd)
        return LockHolder.parse(data.decode("utf-8", "replace"))

    def _unchanged_for(self, state: object) -> float:
        """Seconds of this process's monotonic clock since the lock file was first seen in ``state``."""
        now = time.monotonic()
        if self._seen is None or self._seen[0] != state:
            self._seen = (state, now)
        return now - self._seen[1]

    def take_over_if_stale(self) -> LockHolder | None:
        """Removes the lock file when its holder is dead or has made no progress for ``stale_after`` s.

        Returns:
            The holder whose lock was removed, or ``None`` when the lock was left alone.
        """
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise self._not_a_lock(_kind(info.st_mode))
        holder = self.holder()
        if holder is not None and holder.lock_id == self.lock_id:
            return None
        state = (info.st_ino, info.st_mtime_ns, info.st_size, repr(holder))
        age = max(time.time() - info.st_mtime, self._unchanged_for(state))  # a future mtime gives a negative age
        dead = holder is not None and holder.is_dead()
        if not dead and age < self.stale_after:
            return None
        reason = "its holder is dead" if dead else f"it made no progress for {age:.0f} s"
        _log.warning("Taking over lock %s held by %r: %s.", self.path, holder, reason)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return None
        return holder or LockHolder("", 0, "")

    def touch(self, min_interval: float = 1.0) -> None:
        """Records progress (updates the lock's mtime), at most once per ``min_interval`` seconds."""
        if not self.held:
            return
        now = time.monotonic()
        if now - self._last_touch < min_interval:
            return
        self._last_touch = now
        with contextlib.suppress(OSError, NotImplementedError):  # taken over: harmless, our rename stays atomic
            # Never through a link: the path may have been taken over and replaced by someone else's link.
            os.utime(self.path, follow_symlinks=os.utime not in os.supports_follow_symlinks)

    def release(self) -> None:
        """Removes the lock file if this object still holds it (not if it was taken over)."""
        if not self.held:
            return
        self.held = False
        try:
            holder = self.holder()
        except ResolveError:  # replaced by something that is not a lock file: not ours to remove
            return
        if holder is not None and holder.lock_id == self.lock_id:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
