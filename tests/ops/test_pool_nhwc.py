"""Channels-last pools (hubkit/ops/pool_nhwc.py) against the channels-first kernels of pool_nchw.py.

Max and average pools must equal the NCHW kernels exactly (the same taps, the same float additions in
the same order, the same counts) on transposed inputs, with padding, dilations, ceil mode and
``count_include_pad``; the spatial mean agrees with NumPy's within summation-order rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.errors import OpError
from hubkit.ops import _numba, pool_nchw
from hubkit.ops.onnx_conv import window_geometry
from hubkit.ops.pool_nhwc import avg_pool2d_nhwc, global_avg_pool_nhwc, max_pool2d_nhwc

# (size, kernel, strides, dilations, pads: top, left, bottom, right, ceil mode)
CASES = [
    ((7, 7), (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), True),  # SqueezeNet's ceil-mode pools
    ((8, 9), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1), False),  # ResNet's stem pool
    ((6, 6), (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), False),  # DenseNet's transitions
    ((5, 5), (5, 5), (1, 1), (1, 1), (0, 0, 0, 0), False),  # a global pool
    ((9, 7), (3, 2), (1, 2), (2, 1), (2, 1, 0, 1), True),
    ((4, 5), (3, 3), (1, 1), (1, 1), (2, 2, 2, 2), False),  # corner windows mostly of padding
]


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


@pytest.mark.parametrize(("size", "kernel", "strides", "dilations", "pads", "ceil"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pools_equal_the_nchw_kernels(size, kernel, strides, dilations, pads, ceil, dtype):
    rng = np.random.default_rng(size[0] * kernel[0])
    x = rng.standard_normal((2, 19, *size)).astype(dtype)
    x[0, 3, 1, 1] = np.nan  # NaN wins a max, as np.maximum has it
    hw, begin, end = window_geometry(size, kernel, strides, dilations, pads, "NOTSET", ceil)
    want = pool_nchw.max_pool2d(x, kernel, strides, dilations, begin, hw)
    got = max_pool2d_nhwc(_nhwc(x), kernel, strides, dilations, begin, hw)
    assert want is not None and got is not None
    np.testing.assert_array_equal(got, _nhwc(want))
    hw, begin, end = window_geometry(size, kernel, strides, (1, 1), pads, "NOTSET", ceil)
    for include_pad in (False, True):
        want = pool_nchw.avg_pool2d(x, kernel, strides, begin, end, include_pad, hw)
        got = avg_pool2d_nhwc(_nhwc(x), kernel, strides, begin, end, include_pad, hw)
        assert want is not None and got is not None
        np.testing.assert_array_equal(got, _nhwc(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_mean_matches_numpy(dtype):
    x = np.random.default_rng(1).standard_normal((3, 13, 11, 40)).astype(dtype) + 5
    got = global_avg_pool_nhwc(x)
    assert got.shape == (3, 40) and got.dtype == dtype
    tol = 2e-7 if dtype == np.float32 else 1e-13  # a float64 sum, rounded once
    np.testing.assert_allclose(got, x.astype(np.float64).mean(axis=(1, 2)), rtol=tol)


def test_without_numba_the_pools_decline_and_the_mean_uses_numpy():
    x = np.ones((1, 4, 4, 3), np.float32)
    _numba.set_numba_enabled(False)
    try:
        assert max_pool2d_nhwc(x, (2, 2), (2, 2), (1, 1), (0, 0), (2, 2)) is None
        assert avg_pool2d_nhwc(x, (2, 2), (2, 2), (0, 0), (0, 0), False, (2, 2)) is None
        np.testing.assert_array_equal(global_avg_pool_nhwc(x), np.ones((1, 3), np.float32))
    finally:
        _numba.set_numba_enabled(None)


def test_bad_windows_are_refused():
    x = np.ones((1, 4, 4, 3), np.float32)
    with pytest.raises(OpError, match="pool window"):
        max_pool2d_nhwc(x, (0, 2), (1, 1), (1, 1), (0, 0), (4, 4))
    with pytest.raises(OpError, match="pool window"):
        avg_pool2d_nhwc(x, (2, 2), (1, 1), (-1, 0), (0, 0), False, (3, 3))
    with pytest.raises(OpError, match="end pads"):
        avg_pool2d_nhwc(x, (2, 2), (1, 1), (0, 0), (-1, 0), False, (3, 3))
    with pytest.raises(OpError, match="4-D input"):
        max_pool2d_nhwc(np.ones((4, 4, 3), np.float32), (2, 2), (1, 1), (1, 1), (0, 0), (3, 3))
    with pytest.raises(OpError, match="4-D input"):
        global_avg_pool_nhwc(np.ones((4, 3), np.float32))


@pytest.mark.parametrize("channels", [1, 8, 19, 43, 64, 77])  # groups of 4 vectors, single ones, a tail
def test_llvm_max_pool_equals_the_numba_kernel_value_for_value(channels):
    """float32 runs on hk_maxpool_f32 (hubkit/ops/_pool_kernel.py): every geometry of CASES, NaN and -0.0 taps,
    the same bits as the Numba kernel; a call for some output rows writes only those."""
    from hubkit.ops import _gemm_kernel, _packed_gemm, pool_nhwc

    if not _packed_gemm.available():
        pytest.skip("the LLVM kernels do not run here")
    fast = _numba.kernel(pool_nhwc.max_pool_nhwc_kernel)
    rng = np.random.default_rng(channels)
    for size, kernel, strides, dilations, pads, ceil in CASES:
        x = rng.standard_normal((2, *size, channels)).astype(np.float32)
        x[0, 1, 1, 0] = np.nan
        x[1, 0, :, :] = -0.0
        x[1, 1, :, :] = 0.0
        hw, begin, _ = window_geometry(size, kernel, strides, dilations, pads, "NOTSET", ceil)
        want = np.empty((2, *hw, channels), np.float32)
        fast(x, *kernel, *strides, *dilations, *begin, want)
        got = np.full_like(want, 7.0)
        assert pool_nhwc._max_pool_llvm(x, kernel, strides, dilations, begin, got)
        assert got.tobytes() == want.tobytes()
        part = np.full_like(want, 7.0)
        import ctypes

        fn = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 17)(_gemm_kernel.pool_kernel_address())
        fn(x.ctypes.data, *size, channels, *kernel, *strides, *dilations, *begin, *hw, part.ctypes.data, 1, hw[0] + 1)
        rows = part.reshape(2 * hw[0], -1)
        assert (rows[:1] == 7.0).all() and (rows[hw[0] + 1 :] == 7.0).all()
        assert rows[1 : hw[0] + 1].tobytes() == want.reshape(2 * hw[0], -1)[1 : hw[0] + 1].tobytes()


def test_huge_geometry_goes_to_the_checked_kernel():
    """Strides or pads near 2**63 would overflow the LLVM kernel's window arithmetic: the Numba kernel runs them."""
    from hubkit.ops import _packed_gemm, pool_nhwc

    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    out = np.empty((2, 2, 2, 3), np.float32)
    assert not pool_nhwc._max_pool_llvm(x, (2, 2), (1 << 62, 1), (1, 1), (0, 0), out)
    got = max_pool2d_nhwc(x, (2, 2), (1 << 62, 1), (1, 1), (0, 0), (2, 2))
    assert got is not None and (got[:, 0] == np.maximum(np.maximum(x[:, 0, :2], x[:, 0, 1:3]),
                                                        np.maximum(x[:, 1, :2], x[:, 1, 1:3]))).all()
    assert (got[:, 1] == -np.inf).all()  # the second window row starts far past the input
    if _packed_gemm.available():
        assert pool_nhwc._max_pool_llvm(x, (2, 2), (1, 1), (1, 1), (0, 0), out)


def test_a_split_max_pool_gives_the_same_bits_and_the_worker_takes_its_half(monkeypatch):
    """With two BLAS threads, half of a float32 pool's output rows run on the worker (hk_maxpool_job): the Numba
    kernel's values on every geometry of CASES; the worker runs its half within a bounded number of calls."""
    import time

    from hubkit.ops import _packed_gemm, _worker_pool, pool_nhwc

    if not _packed_gemm.available() or not _worker_pool.available():
        pytest.skip("the LLVM kernels or the worker do not run here")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)
    monkeypatch.setattr(pool_nhwc, "SPLIT_MIN_OUTPUTS", 0)
    fast = _numba.kernel(pool_nhwc.max_pool_nhwc_kernel)
    rng = np.random.default_rng(5)
    for size, kernel, strides, dilations, pads, ceil in CASES:
        x = rng.standard_normal((3, *size, 19)).astype(np.float32)
        x[0, 1, 1, 0] = np.nan
        hw, begin, _ = window_geometry(size, kernel, strides, dilations, pads, "NOTSET", ceil)
        want = np.empty((3, *hw, 19), np.float32)
        fast(x, *kernel, *strides, *dilations, *begin, want)
        got = max_pool2d_nhwc(x, kernel, strides, dilations, begin, hw)
        assert got is not None and got.tobytes() == want.tobytes()
    x = rng.standard_normal((1, 111, 111, 64)).astype(np.float32)
    pool = _worker_pool.get_pool()
    jobs = pool.jobs
    deadline = time.monotonic() + 5
    for _ in range(200):  # bounded in count and time: a late worker's half is done by the caller
        got = max_pool2d_nhwc(x, (3, 3), (2, 2), (1, 1), (0, 0), (55, 55))
        if pool.jobs > jobs or time.monotonic() > deadline:
            break
    assert pool.jobs > jobs
    assert got.tobytes() == np.max([x[:, i : i + 109 : 2, j : j + 109 : 2] for i in range(3) for j in range(3)],
                                   axis=0).tobytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_a_prepared_max_pool_gives_the_kernels_bits_and_refuses_other_inputs(monkeypatch, threads):
    """The plan step's prepared call (pool_nhwc.prepare_max_pool): max_pool2d_nhwc's bits on every geometry of
    CASES, one thread and split; None, nothing written, for an input of another shape, dtype or layout, or
    without the kernel; nothing prepared for float64, an empty output or a huge geometry."""
    from hubkit.ops import _packed_gemm, pool_nhwc

    if not _packed_gemm.available():
        pytest.skip("the LLVM kernels do not run here")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: threads)
    monkeypatch.setattr(pool_nhwc, "SPLIT_MIN_OUTPUTS", 0)
    rng = np.random.default_rng(7)
    for size, kernel, strides, dilations, pads, ceil in CASES:
        x = rng.standard_normal((3, *size, 19)).astype(np.float32)
        x[1, 2, 1, 3] = np.nan
        hw, begin, _ = window_geometry(size, kernel, strides, dilations, pads, "NOTSET", ceil)
        call = pool_nhwc.prepare_max_pool(x, kernel, strides, dilations, begin, hw)
        assert call is not None
        want = max_pool2d_nhwc(x, kernel, strides, dilations, begin, hw)
        for _ in range(2):
            got = call(x)
            assert got is not None and got.tobytes() == want.tobytes()
        for other in (x[:2], x.astype(np.float64), np.asfortranarray(x), x.tolist()):
            assert call(other) is None
    monkeypatch.setattr(_packed_gemm, "available", lambda: False)
    assert call(x) is None
    monkeypatch.undo()
    assert pool_nhwc.prepare_max_pool(np.zeros((1, 5, 5, 3)), (2, 2), (1, 1), (1, 1), (0, 0), (4, 4)) is None
    assert pool_nhwc.prepare_max_pool(np.zeros((1, 5, 5, 0), np.float32), (2, 2), (1, 1), (1, 1), (0, 0), (4, 4)) is None
    assert pool_nhwc.prepare_max_pool(np.zeros((1, 5, 5, 3), np.float32), (2, 2), (1 << 62, 1), (1, 1), (0, 0), (2, 2)) is None
    with pytest.raises(OpError):
        pool_nhwc.prepare_max_pool(np.zeros((1, 5, 5, 3), np.float32), (0, 2), (1, 1), (1, 1), (0, 0), (4, 4))


def test_the_plan_step_runs_a_max_pool_prepared_once_per_input_shape(monkeypatch):
    from types import SimpleNamespace

    from hubkit.ops import _packed_gemm, pool_nhwc
    from hubkit.runtime.optimize_layout import NhwcPool

    if not _packed_gemm.available():
        pytest.skip("the LLVM kernels do not run here")
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 0, 0], "ceil_mode": 1}
    step = NhwcPool(SimpleNamespace(attrs=attrs, kind="OnnxMaxPool", label="MaxPool"))
    general = []
    run = pool_nhwc.max_pool2d_nhwc
    monkeypatch.setattr(pool_nhwc, "max_pool2d_nhwc", lambda *a: general.append(1) or run(*a))
    rng = np.random.default_rng(3)
    for shape, calls in (((1, 9, 9, 8), 1), ((2, 7, 7, 8), 2)):
        x = rng.standard_normal(shape).astype(np.float32)
        want = run(x, (3, 3), (2, 2), (1, 1), (0, 0), ((shape[1] - 2) // 2 + 1,) * 2)
        for _ in range(3):
            assert step(x).tobytes() == want.tobytes()
        assert len(general) == calls  # the first call of a shape takes the general path and prepares


@pytest.mark.parametrize("channels", [8, 43, 64])
def test_windows_with_nans_or_infinities_keep_the_first_nan_bit_for_bit(channels):
    """hk_maxpool_f32 takes the taps' maximum with one maxps each and a running sum; a window whose sum is NaN (a
    NaN tap, or +inf with -inf) is taken again by the exact rule: NaNs of distinct payloads, +-inf and -0.0 at
    random taps give the Numba kernel's bits (the first NaN of the window, payload and sign included)."""
    from hubkit.ops import _packed_gemm, pool_nhwc

    if not _packed_gemm.available():
        pytest.skip("the LLVM kernels do not run here")
    fast = _numba.kernel(pool_nhwc.max_pool_nhwc_kernel)
    rng = np.random.default_rng(channels + 1)
    specials = np.array([0x7FC00001, 0x7FC00002, 0xFFC00003, 0x7F800000, 0xFF800000, 0x80000000],
                        np.uint32).view(np.float32)  # two NaNs, a negative NaN, +inf, -inf, -0.0
    for size, kernel, strides, dilations, pads, ceil in CASES:
        x = rng.standard_normal((2, *size, channels)).astype(np.float32)
        flat = x.reshape(-1)
        where = rng.choice(flat.size, size=max(6, flat.size // 15), replace=False)
        flat[where] = specials[rng.integers(0, len(specials), len(where))]
        hw, begin, _ = window_geometry(size, kernel, strides, dilations, pads, "NOTSET", ceil)
        want = np.empty((2, *hw, channels), np.float32)
        fast(x, *kernel, *strides, *dilations, *begin, want)
        got = np.empty_like(want)
        assert pool_nhwc._max_pool_llvm(x, kernel, strides, dilations, begin, got)
        assert got.view(np.uint32).tobytes() == want.view(np.uint32).tobytes()


def test_a_max_pool_first_run_with_numba_off_is_prepared_once_it_is_on():
    from types import SimpleNamespace

    from hubkit.ops import _packed_gemm, pool_nhwc
    from hubkit.runtime.optimize_layout import NhwcPool

    if not _packed_gemm.available():
        pytest.skip("the LLVM kernels do not run here")
    attrs = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0]}
    step = NhwcPool(SimpleNamespace(attrs=attrs, kind="OnnxMaxPool", label="MaxPool", __call__=None))
    x = np.random.default_rng(0).standard_normal((1, 6, 6, 8)).astype(np.float32)
    _numba.set_numba_enabled(False)
    try:
        assert pool_nhwc.prepare_max_pool(x, (2, 2), (2, 2), (1, 1), (0, 0), (3, 3)) is None
        step._fast = ((x.shape, x.dtype, False), None)  # as the first run, Numba off, left it
    finally:
        _numba.set_numba_enabled(None)
    want = max_pool2d_nhwc(x, (2, 2), (2, 2), (1, 1), (0, 0), (3, 3))
    assert step(x).tobytes() == want.tobytes()
    assert isinstance(step._fast[1], pool_nhwc.MaxPoolCall)
