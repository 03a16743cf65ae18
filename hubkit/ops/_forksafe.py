"""A lock that a forked child gets fresh: one mechanism for the compile-once locks of the native kernels.

A thread of the parent that held a lock while another forked (compiling a kernel, say) leaves it held
forever in the child, whose first call would then wait for good. :class:`ForkSafeLock` replaces its
inner lock in every child (``os.register_at_fork``), so the child starts unlocked.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

__all__ = ["ForkSafeLock"]

_LOCKS: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


class ForkSafeLock:
    """A ``threading.Lock`` (``with``, :meth:`acquire`, :meth:`release`) that is unlocked in a forked child."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _LOCKS.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """As ``threading.Lock.acquire``."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """As ``threading.Lock.release``."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()


def _after_fork_in_child() -> None:
    for lock in list(_LOCKS):
        lock._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
