"""Per-thread scratch buffers for kernels that work block by block (im2col patches, Winograd tiles)."""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["ScratchBuffers"]


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
