"""A lock file that saves duplicate downloads; correctness never depends on it.

The lock is a file created with ``O_EXCL`` holding its holder's host, pid and a unique id. The holder
touches it while it makes progress. A waiter takes the lock over at once when the holder is a dead
process on this host, and after ``stale_after`` seconds without progress otherwise. Two processes may
still end up downloading the same thing (e.g. both take over a stale lock); that only costs bandwidth,
because every download goes to a private temp path that is renamed into place atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid

__all__ = ["LockFile", "LockHolder", "pid_alive"]

_log = logging.getLogger("hubkit.hub")


def _hostname() -> str:
    import socket  # lazy: keeps `import hubkit` fast

    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Returns whether a process with this pid exists on this host."""
    if pid <= 0:
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
        """Reads a holder from lock file contents; ``None`` if they are unreadable (being written)."""
        try:
            data = json.loads(text)
            return cls(str(data["host"]), int(data["pid"]), str(data["id"]))
        except (ValueError, KeyError, TypeError):
            return None

    def is_dead(self) -> bool:
        """Returns whether the holder is known to be dead: a missing process on this very host."""
        return self.host == _hostname() and not pid_alive(self.pid)

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

    def try_acquire(self) -> bool:
        """Creates the lock file if nobody holds it.

        Returns:
            ``True`` if this object now holds the lock.

        Raises:
            OSError: The lock file could not be created for a reason other than being held.
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        payload = {"host": _hostname(), "pid": os.getpid(), "id": self.lock_id, "created": time.time()}
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        self.held = True
        self._last_touch = time.monotonic()
        return True

    def holder(self) -> LockHolder | None:
        """Returns the current holder, or ``None`` if the file is gone or half-written."""
        try:
            with open(self.path) as f:
                return LockHolder.parse(f.read())
        except FileNotFoundError:
            return None

    def take_over_if_stale(self) -> LockHolder | None:
        """Removes the lock file when its holder is dead or has made no progress for ``stale_after`` s.

        Returns:
            The holder whose lock was removed, or ``None`` when the lock was left alone.
        """
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return None
        holder = self.holder()
        if holder is not None and holder.lock_id == self.lock_id:
            return None
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
        with contextlib.suppress(OSError):  # taken over by someone else: harmless, our rename stays atomic
            os.utime(self.path)

    def release(self) -> None:
        """Removes the lock file if this object still holds it (not if it was taken over)."""
        if not self.held:
            return
        self.held = False
        holder = self.holder()
        if holder is not None and holder.lock_id == self.lock_id:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
