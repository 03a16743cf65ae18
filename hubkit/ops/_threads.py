"""Row-parallel runs of Numba kernels (``numba.prange``), within the user's thread settings.

Large epilogues (a fused GEMM's ``act(out + bias)`` over megabytes) are memory-bound passes that
BLAS does not do for us. With more than one thread allowed, :func:`run_rows` runs a kernel's
``prange`` form, which splits the rows into one contiguous part per thread and applies the same
per-element code to each, so the results are bit for bit those of the one-thread kernel.

The thread count follows the user's settings, in this order: :func:`set_num_threads`, then the
first of ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
that is set, else the CPUs this process may run on. So ``OPENBLAS_NUM_THREADS=1`` keeps every
kernel on the calling thread, as BLAS is.

Two guards keep Numba's threading layers safe to use from a library:

- **Fork.** Numba's OpenMP layer terminates a forked child that launches a parallel kernel when the
  parent had launched one (``multiprocessing``'s default start method on Linux before Python 3.14):
  a process that is not the one which launched first runs the one-thread kernels.
- **Concurrent callers.** Numba's workqueue layer (its fallback when OpenMP and TBB are missing)
  aborts on two launches at once: one parallel launch at a time; a caller that finds one running
  uses the one-thread kernel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from hubkit.ops import _numba

__all__ = ["MIN_ELEMENTS_PER_THREAD", "num_threads", "parallel_kernel", "run_rows", "set_num_threads"]

MIN_ELEMENTS_PER_THREAD = 1 << 16
"""Below this many elements per part, waking a thread costs more than it saves."""

_ENV_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _State:
    forced: int | None = None
    threads: int | None = None  # resolved count (None: read the settings on next use)
    launcher_pid: int | None = None  # the process that launched the first parallel kernel
    launch = threading.Lock()
    compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


_STATE = _State()


def _from_settings() -> int:
    for var in _ENV_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def num_threads() -> int:
    """How many threads hubkit's own parallel kernels use (1: everything on the calling thread)."""
    n = _STATE.threads
    if n is None:
        n = _STATE.threads = _STATE.forced if _STATE.forced is not None else _from_settings()
    return n


def set_num_threads(n: int | None) -> int:
    """Sets the thread count of hubkit's parallel kernels (``None``: from the environment again).

    Returns:
        The thread count now in effect.
    """
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"The thread count must be a positive integer or None, got {n!r}.")
    _STATE.forced = n
    _STATE.threads = None
    return num_threads()


def parallel_kernel(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """``fn`` (which loops ``for p in prange(parts)``) compiled with ``parallel=True``; None without Numba."""
    if not _numba.numba_enabled():
        return None
    done = _STATE.compiled.get(fn)
    if done is not None:
        return done
    if _numba.kernel(fn) is None:  # imports numba and sets its cache directory, or finds it broken
        return None
    import numba

    # Kernels loop over ``prange``, a module global that is ``range`` until now: hubkit's import never imports numba.
    fn.__globals__["prange"] = numba.prange
    with _STATE.launch:
        done = _STATE.compiled.get(fn)
        if done is None:
            done = _STATE.compiled[fn] = numba.njit(cache=True, nogil=True, parallel=True)(fn)
    return done


def run_rows(serial: Callable[..., Any], parallel: Callable[..., Any] | None, out: Any, *args: Any) -> None:
    """Runs ``serial(out, *args)``, or ``parallel(out, parts, *args)`` over up to :func:`num_threads` row parts.

    Args:
        serial: the one-thread compiled kernel.
        parallel: its ``prange`` form (from :func:`parallel_kernel`), or None.
        out: the 2-D array whose rows are split (rows are independent).
    """
    parts = min(num_threads(), out.shape[0], out.size // MIN_ELEMENTS_PER_THREAD)
    if parts > 1 and parallel is not None:
        pid = os.getpid()
        if _STATE.launcher_pid in (None, pid) and _STATE.launch.acquire(blocking=False):
            try:
                _STATE.launcher_pid = pid
                parallel(out, parts, *args)
                return
            finally:
                _STATE.launch.release()
    serial(out, *args)
