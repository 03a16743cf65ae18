"""Compile one plan twice, with the plan optimiser off and on, so tests can compare what each computes."""

from __future__ import annotations

import numpy as np

from hubkit.ops._epilogue import RELU, RELU6
from hubkit.runtime.executor import compile_plan
from hubkit.runtime.optimize import set_optimize_enabled


def plain_and_optimised(graph, fetches, feeds):
    """Returns ``(plain, optimised)``: the plan compiled with the optimiser off, then with the default."""
    set_optimize_enabled(False)
    try:
        plain = compile_plan(graph, fetches, feeds)
    finally:
        set_optimize_enabled(None)
    return plain, compile_plan(graph, fetches, feeds)


def dense_reference(x, w, bias, act):
    """A dense layer in float64 (``x @ w`` + bias, then ReLU/ReLU6), and ``|x| @ |w|`` to scale tolerances."""
    z = x.astype(np.float64) @ w.astype(np.float64)
    if bias is not None:
        z = z + bias
    if act == RELU:
        z = np.maximum(z, 0)
    elif act == RELU6:
        z = np.clip(z, 0, 6)
    return z, np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64))


def depth_loop_reference(x, layers):
    """Dense layers ``(w, bias or None, act)`` computed by a loop over the depth in float32: each output the sum of
    its products in the order of the depth, each product rounded and then added (what the column-split chain
    computes, hubkit/ops/_chain_cols.py), then ``act(sum + bias)`` as the fused epilogue's ``activate`` does (ReLU
    turns -0.0 into 0.0, ReLU6 keeps it; both keep NaN)."""
    h = np.asarray(x, np.float32)
    for w, bias, act in layers:
        acc = np.zeros((h.shape[0], w.shape[1]), np.float32)
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 and inf - inf: NaN, as in the kernel
            for k in range(w.shape[0]):
                acc = acc + h[:, k : k + 1] * w[k]
        if bias is not None:
            acc = acc + bias
        if act == RELU:
            acc = np.where(acc <= 0, np.float32(0), acc)
        elif act == RELU6:
            acc = np.where(acc < 0, np.float32(0), np.where(acc > 6, np.float32(6), acc))
        h = acc.astype(np.float32)
    return h


def assert_loop_bits(got, want):
    """``got`` is ``want`` (:func:`depth_loop_reference`'s) bit for bit, but for NaN: NaN exactly where ``want`` has
    NaN, whatever its sign and payload (which NaN an addition of two NaNs keeps depends on the order of its
    operands, which a compiler may swap)."""
    assert got is not None and got.dtype == np.float32 and got.shape == want.shape
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert got[~nan].tobytes() == want[~nan].tobytes()


def blas_sums_by_row() -> bool:
    """Whether NumPy's BLAS gives each float32 GEMM row the same bits whatever the number of rows in the call.

    OpenBLAS's AVX-512 kernels do (the plans' GEMMs then match bit for bit however the rows are chunked);
    its AVX2 (Haswell, Zen) kernels sum a row's depth in an order that depends on the call's shape."""
    rng = np.random.default_rng(0)
    for depth in (32, 288):
        a = rng.standard_normal((98, depth)).astype(np.float32)
        b = rng.standard_normal((depth, 32)).astype(np.float32)
        full = a @ b
        if not all(np.array_equal(a[:m] @ b, full[:m]) for m in (1, 7, 49)):
            return False
    return True
