"""The small-batch linear kernel with its output columns split across Numba's threads.

Imported by :func:`hubkit.ops._small_linear.small_linear` only when Numba is on and more than one
thread is allowed (this module imports numba).
"""

from __future__ import annotations

import numba
import numpy as np

from hubkit.ops import _numba
from hubkit.ops._small_linear import _FASTMATH, linear_block_kernel

__all__ = ["parallel_linear"]

_block = _numba.kernel(linear_block_kernel, fastmath=_FASTMATH)


def _parallel_kernel(x, wt, bias, act, out, parts):  # pragma: no cover - compiled by Numba
    n = wt.shape[0]
    for p in numba.prange(parts):
        _block(x, wt, bias, act, out, p * n // parts, (p + 1) * n // parts)


def parallel_linear(
    x: np.ndarray, wt: np.ndarray, bias: np.ndarray, act: int, out: np.ndarray, parts: int
) -> None:
    """``linear_block_kernel`` over all of ``out``'s columns, in ``parts`` column ranges on Numba's threads."""
    fn = _numba.kernel(_parallel_kernel, parallel=True)
    assert fn is not None  # this module is imported only when Numba is on
    fn(x, wt, bias, act, out, parts)
