"""Image chunks of a convolution on two threads when the BLAS has two: the caller's and one started per call.

Kernels that loop over chunks of images, each chunk writing only its own images of the output (Winograd
F(4x4, 3x3) in :mod:`hubkit.ops._winograd43`, the direct RGB convolution of :mod:`hubkit.ops._conv_small`),
give the second half of their chunks to a thread started for the call when the BLAS runs two or more
threads and the process has two CPUs. Their compiled kernels release the GIL, a chunk takes milliseconds
(so starting a thread does not matter), and nothing outlives the call (a forked child has nothing to
inherit). With one BLAS thread everything runs on the caller, as before. While the two halves run, NumPy's
BLAS is held at one thread (:func:`hubkit.ops._packed_gemm.blas_one_thread`): the kernels' own GEMMs
(Winograd's products on np.matmul) would otherwise wake its threads, whose spinning took the second core
from the helper (the image CNN at 2 threads on an AVX2 host: 29.4-29.7 against 51.7-54.8 ms).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

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
    """``run(starts)``; when ``split``, the second half of ``starts`` on a thread of its own (its error raised here)."""
    if not split or len(starts) < 2:
        run(starts)
        return
    from hubkit.ops._packed_gemm import blas_one_thread
    from hubkit.ops._worker_pool import caller_anywhere, spin_for

    failed: list[BaseException] = []

    def second() -> None:
        try:
            run(starts[len(starts) // 2 :])
        except BaseException as e:  # raised again in the caller
            failed.append(e)

    # both cores are taken: BLAS threads woken here, or hubkit's worker spinning, would take the helper's core
    # (and the caller, kept off the worker's CPUs in a channels-last plan, may use them: the worker does not run)
    with blas_one_thread(), spin_for(0), caller_anywhere():
        helper = threading.Thread(target=second, name="hubkit-chunks", daemon=True)
        helper.start()
        try:
            run(starts[: len(starts) // 2])
        finally:
            helper.join()
    if failed:
        raise failed[0]

