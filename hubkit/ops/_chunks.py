"""Image chunks of a convolution on two threads when the BLAS has two: the caller's and a helper thread.

Kernels that loop over chunks of images, each chunk writing only its own images of the output (Winograd
F(4x4, 3x3) in :mod:`hubkit.ops._winograd43`, the direct RGB convolution of :mod:`hubkit.ops._conv_small`),
give the second half of their chunks to a helper thread when the BLAS runs two or more threads and the
process has two CPUs. Their compiled kernels release the GIL. The helper is one daemon thread, started on
first use and waiting on a queue between calls: a thread started per call cost 160-190 us (start and join),
as much as a third of a Winograd layer's half at one image (a forked child starts its own; a second caller
while it is busy runs all of its chunks itself). With one BLAS thread everything runs on the caller, as before. While the two halves run, NumPy's
BLAS is held at one thread (:func:`hubkit.ops._packed_gemm.blas_one_thread`): the kernels' own GEMMs
(Winograd's products on np.matmul) would otherwise wake its threads, whose spinning took the second core
from the helper (the image CNN at 2 threads on an AVX2 host: 29.4-29.7 against 51.7-54.8 ms).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable

from hubkit.ops._forksafe import ForkSafeLock

__all__ = ["run_chunks", "two_threads"]


def two_threads() -> bool:
    """Whether the BLAS has two or more threads and this process two CPUs."""
    from hubkit.ops import _packed_gemm, _worker_pool

    try:
        cpus = len(_worker_pool.own_cpus())
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus >= 2 and _packed_gemm.blas_threads() >= 2


def run_chunks(starts: list[int], run: Callable[[list[int]], None], split: bool) -> None:
    """``run(starts)``; when ``split``, the second half of ``starts`` on the helper thread (its error raised here)."""
    if not split or len(starts) < 2:
        run(starts)
        return
    from hubkit.ops._packed_gemm import blas_one_thread
    from hubkit.ops._worker_pool import caller_anywhere, spin_for

    second = starts[len(starts) // 2 :]
    helper = _helper()
    if not helper.lock.acquire(blocking=False):  # another caller has it: this one runs every chunk itself
        run(starts)
        return
    try:
        # both cores are taken: BLAS threads woken here, or hubkit's worker spinning, would take the helper's core
        # (and the caller, kept off the worker's CPUs in a channels-last plan, may use them: the worker does not run)
        with blas_one_thread(), spin_for(0), caller_anywhere():
            reply: queue.SimpleQueue = queue.SimpleQueue()  # this call's own answer: an interrupted wait (Ctrl-C)
            # leaves it unread, and no later call can take it for its own
            helper.jobs.put((run, second, _caller_cpus(), reply))
            try:
                run(starts[: len(starts) // 2])
            finally:
                failed = reply.get()  # the helper always answers: its loop catches everything
        if failed is not None:
            raise failed
    finally:
        helper.lock.release()


def _caller_cpus() -> set[int] | None:
    """The caller's own CPU set, which the helper takes for its half (None: no CPU sets here)."""
    from hubkit.ops._worker_pool import own_cpus

    try:
        return own_cpus()
    except (AttributeError, OSError):  # no CPU sets here: the helper keeps its own
        return None


class _Helper:
    """A daemon thread that runs ``run(starts)`` jobs from :attr:`jobs` and answers each on the job's own reply queue
    (None or the error); :attr:`lock` gives it to one caller at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.cpus: set[int] | None = None
        self.pid = os.getpid()
        threading.Thread(target=self._loop, name="hubkit-chunks", daemon=True).start()

    def _loop(self) -> None:
        while True:
            run, starts, cpus, reply = self.jobs.get()
            try:
                if cpus is not None and cpus != self.cpus:  # the caller's own CPU set (a thread inherits its starter's)
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(0, cpus)
                    self.cpus = cpus
                run(starts)
                reply.put(None)
            except BaseException as e:  # raised again in the caller
                reply.put(e)
            run = starts = reply = None  # nothing of the call (its arrays) kept until the next one


_HELPER: list[_Helper] = []
_helper_lock = ForkSafeLock()  # fresh in a forked child: a parent thread may hold it while starting the helper


def _helper() -> _Helper:
    """The process's helper thread (started on first use; a new one in a forked child, where it does not exist)."""
    if _HELPER and _HELPER[0].pid == os.getpid():
        return _HELPER[0]
    with _helper_lock:
        if not _HELPER or _HELPER[0].pid != os.getpid():
            _HELPER[:] = [_Helper()]
    return _HELPER[0]
