"""A lock that a forked child gets fresh: one mechanism for the compile-once locks of the native kernels.

A thread of the parent that held a lock while another forked (compiling a kernel, say) leaves it held
forever in the child, whose first call would then wait for good. :class:`ForkSafeLock` replaces its
inner lock in every child (``os.register_at_fork``), so the child starts unlocked.

The compilers hubkit drives have locks of their own: Numba's compiler lock and llvmlite's lock around every call
into LLVM. A fork while another thread compiled left them held in the child (the child's first compile then
hung: three forks out of three during a first column-split call). They are not hubkit's to replace, so a fork
waits for them instead: the forking thread takes both before the fork (in the order a Numba compile takes them)
and gives them back after it, in the parent and in the child (:func:`_hold_compilers`; only those of the two
libraries already imported).
"""

from __future__ import annotations

import os
import sys
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


def _compiler_locks() -> list[Any]:
    """Numba's compiler lock and llvmlite's LLVM lock (re-entrant locks), those of the libraries imported."""
    locks = []
    numba_lock = sys.modules.get("numba.core.compiler_lock")
    if numba_lock is not None:
        locks.append(numba_lock.global_compiler_lock._lock)
    ffi = sys.modules.get("llvmlite.binding.ffi")
    if ffi is not None:
        locks.append(ffi.lib._lock._lock)
    return locks


_HELD: list[Any] = []


def _hold_compilers() -> None:
    locks = _compiler_locks()
    for lock in locks:
        lock.acquire()
    _HELD[:] = locks


def _release_compilers() -> None:
    for lock in reversed(_HELD):
        lock.release()
    _HELD.clear()


os.register_at_fork(before=_hold_compilers, after_in_parent=_release_compilers, after_in_child=_release_compilers)
os.register_at_fork(after_in_child=_after_fork_in_child)
