"""Per-thread scratch buffers for kernels that work block by block (im2col patches, Winograd tiles)."""

from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["RecycledOutputs", "ScratchBuffers"]


class ScratchBuffers:
    """Named flat buffers, one set per thread, reused by the next block and the next call.

    A buffer is only valid until the same thread asks for the same name again. Buffers up to
    ``keep_bytes`` are kept between calls; a larger one is returned once and then freed.
    """

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self._local = threading.local()

    def get(self, name: str, size: int, dtype: np.dtype) -> np.ndarray:
        """A flat buffer of at least ``size`` elements of ``dtype`` (contents undefined)."""
        buf = getattr(self._local, name, None)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(size, dtype=dtype)
            if buf.nbytes <= self.keep_bytes:
                setattr(self._local, name, buf)
        return buf


class RecycledOutputs:
    """Large output arrays whose memory is reused once nothing references them any more.

    A fresh ``np.empty`` of tens of MB comes from ``mmap``: every call then takes its page faults again
    (and with transparent huge pages, the kernel's compaction), which cost imported CNNs at batch 16
    more CPU time than some of their layers. This keeps the buffers it handed out (per thread, up to
    ``max_bytes`` in all) and hands one back out when the only references left are its own: an array
    still held anywhere (a plan slot, a view, the caller's result) is never reused.
    """

    def __init__(self, min_bytes: int, max_bytes: int) -> None:
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.enabled = True
        self._local = threading.local()

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype`` (recycled memory when large)."""
        dtype = np.dtype(dtype)
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= d
        if nbytes < self.min_bytes or not self.enabled:
            return np.empty(shape, dtype)
        bufs: list[np.ndarray] | None = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = []
        for i in range(len(bufs)):
            # references: the list, and getrefcount's argument; any view or holder adds one
            if nbytes <= bufs[i].nbytes <= 2 * nbytes and sys.getrefcount(bufs[i]) == 2:
                buf = bufs.pop(i)
                bufs.append(buf)  # most recently used last
                return buf[:nbytes].view(dtype).reshape(shape)
        buf = np.empty(nbytes, np.uint8)
        bufs.append(buf)
        total = sum(b.nbytes for b in bufs)
        i = 0
        while total > self.max_bytes and i < len(bufs) - 1:  # forget the least recently used free buffers
            if sys.getrefcount(bufs[i]) == 2:
                total -= bufs.pop(i).nbytes
            else:
                i += 1
        return buf.view(dtype).reshape(shape)
