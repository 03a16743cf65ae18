"""The LLVM tile GEMM (ops/_gemm_kernel.py, _gemm_numba.py, _packed_gemm.py) against float64 and NumPy.

Stated tolerance: each output is a float32 sum over K accumulated in FMA order (another order than
NumPy's), so it may differ from the exact value by ``2 * K * eps * sum_k |a_k b_k|`` (plus
``2 * eps * |value|`` for the bias addition and the final rounding); bias and activation follow
``hubkit.ops._epilogue`` exactly (checked with integer-valued data, where every sum is exact).
"""

from __future__ import annotations

import importlib.util
import platform

import numpy as np
import pytest

from hubkit.ops import _gemm_kernel, _numba, _packed_gemm
from hubkit.ops._epilogue import NONE, RELU, RELU6, bias_act_
from hubkit.ops._packed_gemm import PackedWeights, dense, pack_weights, packed_matmul
from tests.helpers_plans import dense_reference

needs_kernel = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba not installed")


@pytest.fixture
def kernel():
    _numba.set_numba_enabled(True)
    if not _packed_gemm.available():
        _numba.set_numba_enabled(None)
        pytest.skip("the LLVM tile kernel does not compile here")
    yield
    _numba.set_numba_enabled(None)


def _check_close(got, want, scale, depth):
    eps = np.finfo(np.float32).eps
    bound = 2 * max(depth, 1) * eps * scale + 2 * eps * np.abs(want) + 1e-30
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.all(np.abs(got - want) <= bound)


# M, K, N: every edge -- 1s, below and above a tile's rows (mr: 13 with AVX-512, else 3), N below,
# at and above 32 and not a multiple of it, K above the depth block (several blocks, accumulated), K of
# every remainder modulo the tile loop's unroll (4) and below it.
SHAPES = [
    (1, 1, 1), (1, 5, 1), (2, 1, 3), (3, 7, 31), (13, 17, 32), (14, 9, 33), (15, 64, 64), (29, 100, 65),
    (64, 784, 512), (64, 512, 10), (1, 784, 512), (100, 257, 95), (37, 600, 47), (5, 1024, 3), (300, 3, 200),
    (6, 2, 5), (20, 6, 40), (17, 38, 33), (27, 11, 64),
    (20, 600, 700), (90, 520, 1100),  # several column blocks (gemm_rows' NC_BYTES), few and many row panels
]


@needs_kernel
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize("shape", SHAPES)
def test_packed_matmul_within_tolerance(shape, act, kernel):
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + k * 7 + n)
    x = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = None if (m + n) % 3 == 0 else rng.standard_normal(n).astype(np.float32)
    got = packed_matmul(x, pack_weights(w), n, bias, act)
    want, scale = dense_reference(x, w, bias, act)
    _check_close(got, want, scale, k)


@needs_kernel
def test_strided_operands_and_outputs(kernel):
    rng = np.random.default_rng(3)
    big = rng.standard_normal((40, 900)).astype(np.float32)
    x = big[1:37:2, 5:805]  # row stride 1800 floats, offset start
    xt = np.asfortranarray(x)  # column-major: copied by the entry point
    w = rng.standard_normal((800, 70)).astype(np.float32)
    wide = np.full((18, 100), np.nan, np.float32)
    out = wide[:, 10:80]  # row stride 100 > 70 columns
    got = packed_matmul(x, pack_weights(w), 70, out=out)
    assert got is out
    want, scale = dense_reference(x, w, None, NONE)
    _check_close(out, want, scale, 800)
    assert np.isnan(wide[:, :10]).all() and np.isnan(wide[:, 80:]).all()  # nothing written outside
    _check_close(packed_matmul(xt, pack_weights(w), 70), want, scale, 800)
    # weights given as a strided view: packed from it
    wv = rng.standard_normal((800, 150)).astype(np.float32)[:, 3:123:2]
    want, scale = dense_reference(x, wv, None, NONE)
    _check_close(packed_matmul(x, pack_weights(wv), 60), want, scale, 800)


@needs_kernel
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
def test_epilogue_exact_on_integer_data(act, kernel):
    """Integer-valued data: every sum is exact, so results equal NumPy's GEMM + the epilogue bit for bit."""
    rng = np.random.default_rng(act)
    m, k, n = 33, 300, 77
    x = rng.integers(-3, 4, (m, k)).astype(np.float32)
    w = rng.integers(-2, 3, (k, n)).astype(np.float32)
    bias = rng.integers(-40, 40, n).astype(np.float32)
    bias[:5] = [-0.0, 0.5, -6.5, 6.5, np.nan]
    want = bias_act_(np.matmul(x, w), bias, act)
    got = packed_matmul(x, pack_weights(w), n, bias, act)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@needs_kernel
def test_nan_and_zero_depth(kernel):
    x = np.ones((4, 8), np.float32)
    x[1, 3] = np.nan
    w = np.ones((8, 40), np.float32)
    got = packed_matmul(x, pack_weights(w), 40, None, RELU)
    assert np.isnan(got[1]).all() and (got[[0, 2, 3]] == 8).all()
    empty = packed_matmul(np.ones((3, 0), np.float32), pack_weights(np.ones((0, 5), np.float32)), 5,
                          np.arange(5, dtype=np.float32) - 2, RELU)
    np.testing.assert_array_equal(empty, np.tile(np.maximum(np.arange(5, dtype=np.float32) - 2, 0), (3, 1)))
    assert packed_matmul(np.ones((0, 8), np.float32), pack_weights(w), 40).shape == (0, 40)


def test_numpy_fallback_returns_none():
    _numba.set_numba_enabled(False)
    try:
        x = np.ones((4, 8), np.float32)
        assert packed_matmul(x, pack_weights(np.ones((8, 3), np.float32)), 3) is None
        assert not _packed_gemm.available()
    finally:
        _numba.set_numba_enabled(None)


@needs_kernel
def test_other_dtypes_return_none(kernel):
    x = np.ones((4, 8), np.float64)
    assert packed_matmul(x, pack_weights(np.ones((8, 3), np.float32)), 3) is None


def test_pack_weights_layout():
    w = np.arange(7 * 45, dtype=np.float32).reshape(7, 45)
    p = pack_weights(w)
    assert p.shape == (2, 7, 32) and p.ctypes.data % 64 == 0
    np.testing.assert_array_equal(p[0], w[:, :32])
    np.testing.assert_array_equal(p[1, :, :13], w[:, 32:])
    assert not p[1, :, 13:].any()


def test_packed_weights_cached_until_the_variable_changes():
    class Var:
        _version = 0

    var = Var()
    cache = PackedWeights(var)
    w = np.ones((5, 3), np.float32)
    first = cache.get(w)
    assert cache.get(w) is first
    var._version += 1
    second = cache.get(w)
    assert second is not first
    assert cache.get(np.ones((5, 3), np.float32)) is not second  # another array object


def test_ir_is_deterministic_and_sized_by_the_host_features():
    assert _gemm_kernel.kernel_ir(14) == _gemm_kernel.kernel_ir(14)
    assert _gemm_kernel.max_mr("+sse2,+avx,+avx2,+fma,+avx512f,+avx512bw") == 13
    assert _gemm_kernel.max_mr("+sse2,+avx,+avx2,+fma,-avx512f") == 6
    assert _gemm_kernel.max_mr("+sse2,+avx,-avx2,-fma,-avx512f") == 3
    assert _gemm_kernel.lanes("+sse2,+avx,+avx2,+fma,-avx512f") == 8
    assert _gemm_kernel.lanes("+sse2,+avx,+avx2,+fma,+avx512f") == 16
    assert _gemm_kernel.lanes("+neon") == 16
    ir = _gemm_kernel.kernel_ir(3)
    assert "@hk_tile_3" in ir and "@hk_tile_4" not in ir and "@llvm.fma.v16f32" in ir
    ir8 = _gemm_kernel.kernel_ir(6, 8)
    assert "@hk_tile_6" in ir8 and "@llvm.fma.v8f32" in ir8 and "v16f32" not in ir8
    with pytest.raises(ValueError):
        _gemm_kernel.kernel_ir(3, 4)


@needs_kernel
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 CPU names")
def test_ir_compiles_without_avx512():
    """The same IR compiles for a CPU without AVX-512 (LLVM splits the vectors)."""
    import llvmlite.binding as llvm

    _gemm_kernel._init_llvm()
    for mr, lanes in ((3, 16), (6, 8)):
        mod = llvm.parse_assembly(_gemm_kernel.kernel_ir(mr, lanes))
        mod.verify()
        tm = llvm.Target.from_default_triple().create_target_machine(cpu="haswell", features="", opt=2)
        with _gemm_kernel._scheduling(lanes):
            asm = tm.emit_assembly(mod)
        assert "zmm" not in asm and "vfmadd" in asm


@needs_kernel
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 CPU names")
@pytest.mark.parametrize("lanes, mr_max", [(16, 3), (8, 6)])
def test_both_vector_widths_compute_the_same_tiles(lanes, mr_max):
    """Each form of the IR, compiled for this host and called directly, against float64: the 16-lane form (AVX-512
    hosts' tile, split in halves without AVX-512) and the 8-lane one, every row count, partial panels, every flag."""
    import ctypes

    import llvmlite.binding as llvm

    _gemm_kernel._init_llvm()
    name, features = _gemm_kernel._host_features()
    if "+avx2" not in features.split(","):
        pytest.skip("the 8-lane form needs AVX2")
    mod = llvm.parse_assembly(_gemm_kernel.kernel_ir(mr_max, lanes))
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=name, features=features, opt=2)
    engine = llvm.create_mcjit_compiler(mod, tm)
    with _gemm_kernel._scheduling(lanes):
        engine.finalize_object()
    tile = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 11)(engine.get_function_address("hk_sgemm_tile"))
    rng = np.random.default_rng(lanes)
    g = _gemm_kernel
    for mr in range(1, mr_max + 1):
        for k, n in ((1, 32), (7, 17), (9, 5), (64, 32)):
            a = rng.standard_normal((mr, k)).astype(np.float32)
            w = rng.standard_normal((k, n)).astype(np.float32)
            bias = rng.standard_normal(n).astype(np.float32)
            packed = pack_weights(w)
            for flags in (0, g.BIAS_COLS | g.RELU, g.ACCUMULATE | g.BIAS_COLS | g.RELU6):
                c = np.full((mr, 40), 3.0, np.float32)  # wider than n: columns past n stay untouched
                tile(mr, k, a.ctypes.data, k, packed.ctypes.data, k * 32, c.ctypes.data, 40, n, flags, bias.ctypes.data)
                want = a.astype(np.float64) @ w + (3.0 if flags & g.ACCUMULATE else 0.0)
                want = want + bias if flags & g.BIAS_COLS else want
                want = np.maximum(want, 0) if flags & (g.RELU | g.RELU6) else want
                want = np.minimum(want, 6) if flags & g.RELU6 else want
                np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-5 * k)
                assert (c[:, n:] == 3.0).all()


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_optimised_plan_within_tolerance_of_unoptimised(seed, transpose_b, kernels, monkeypatch):
    """The fused MatMul step takes the tile kernel for 9+ rows (Numba on) and NumPy's GEMM otherwise."""
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    import hubkit as hk
    from hubkit.runtime.optimize import FusedLinear
    from tests.helpers_plans import plain_and_optimised

    rng = np.random.default_rng(seed)
    g = hk.Graph()
    with g.as_default():
        width = int(rng.choice([100, 784]))
        x = hk.placeholder(np.float32, [None, width], name="x")
        h = x
        for layer in range(int(rng.integers(1, 4))):
            out = int(rng.choice([70, 300, 512]))
            shape = (out, width) if transpose_b else (width, out)
            value = (rng.standard_normal(shape) / np.sqrt(width)).astype(np.float32)
            w = hk.Variable(value, name=f"w{layer}") if layer % 2 == 0 else hk.constant(value)
            h = hk.matmul(h, w, transpose_b=transpose_b)
            if rng.integers(3):
                h = hk.nn.bias_add(h, hk.Variable(rng.standard_normal(out).astype(np.float32), name=f"b{layer}"))
            act = [hk.nn.relu, hk.nn.relu6, None][int(rng.integers(3))]
            h = act(h) if act is not None else hk.identity(h)
            width = out
    plain, optimised = plain_and_optimised(g, [h], [x])
    fused = [s[0] for s in optimised.steps if isinstance(s[0], FusedLinear)]
    assert fused and all(f.packed is not None for f in fused)
    eps = np.finfo(np.float32).eps
    for rows in (9, 31, 64, 100):
        value = rng.standard_normal((rows, x.shape[1])).astype(np.float32)
        (want,) = plain.run([value])
        (got,) = optimised.run([value])
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=3000 * eps, atol=3000 * eps * max(1.0, np.abs(want).max()))
        if kernels == "numpy":
            np.testing.assert_array_equal(got, want)  # NumPy's GEMM: bit for bit
    if kernels == "numba" and _packed_gemm._tile_host() and _packed_gemm.available():
        held = [f.packed._cache or f.packed.variable.__dict__.get("_derived_forms") for f in fused]
        assert any(held)  # the tile kernel ran


def test_settled_weights_are_packed_only_once_they_stop_changing():
    class Var:
        _version = 0

    var = Var()
    cache = PackedWeights(var)
    w = np.ones((5, 3), np.float32)
    first = cache.get(w, settled=True)  # first use: packed
    assert first is not None and cache.get(w, settled=True) is first
    for _ in range(3):  # written between every two calls (training): not packed again
        var._version += 1
        assert cache.get(w, settled=True) is None
    second = cache.get(w, settled=True)  # unchanged since the call before: packed again
    assert second is not None and second is not first and cache.get(w, settled=True) is second
    var._version += 1
    assert cache.get(w) is not None  # without settled: packed at once, as before


def test_packed_weights_follow_variable_writes():
    import hubkit as hk

    v = hk.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
    cache = PackedWeights(v)
    first = cache.get(v.value)
    assert cache.get(v.value) is first  # same array, same version: reused
    v.assign(np.ones((2, 3), np.float32))  # written in place: same array object, new version
    np.testing.assert_array_equal(cache.get(v.value)[0, :, :3], np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(cache.get(v.value, transpose=True)[0, :3, :2], np.ones((3, 2), np.float32))


@needs_kernel
def test_dense_takes_only_what_it_measured_well_on(kernel, monkeypatch):
    if not _packed_gemm._tile_host():
        pytest.skip("dense() runs the kernel with AVX-512 or AVX2 tiles only")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    packed = PackedWeights(None)
    w = np.ones((784, 512), np.float32)
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: True)  # 8-lane tiles: fewer rows than the limit only
    tall = np.ones((_packed_gemm.NARROW_DENSE_MAX_ROWS, 784), np.float32)
    assert dense(tall, w, None, NONE, packed) is None
    np.testing.assert_array_equal(dense(tall[:-1], w, None, NONE, packed), np.full((len(tall) - 1, 512), 784, np.float32))
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: False)
    np.testing.assert_array_equal(dense(tall, w, None, NONE, packed), np.full((len(tall), 512), 784, np.float32))
    assert dense(np.ones((8, 784), np.float32), w, None, NONE, packed) is None  # the small-batch kernel's rows
    assert dense(np.ones((64, 784), np.float32), w[:, :10], None, NONE, packed) is None  # 10 columns
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: True)  # 8-lane tiles also take fewer columns, at any
    for cols, taken in ((10, True), (16, True), (25, True), (48, True), (8, False), (24, False), (63, True)):  # work,
        narrow = dense(np.ones((9, 512), np.float32), w[:512, :cols].copy(), None, NONE, PackedWeights(None))
        assert (narrow is not None) == taken, cols  # when they fill more than half of their last 16-column tile
        if taken:
            np.testing.assert_array_equal(narrow, np.full((9, cols), 512, np.float32))
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: False)
    assert dense(np.ones((64, 32), np.float32), w[:32], None, NONE, packed) is None  # depth 32
    assert dense(np.ones((9, 200), np.float32), w[:200, :100], None, NONE, packed) is None  # little work, few rows
    assert dense(np.ones((64, 784), np.float64), w.astype(np.float64), None, NONE, packed) is None
    assert dense(np.ones((64, 784), np.float32), w, np.ones(3, np.float32), NONE, packed) is None  # bad bias
    assert dense(np.ones((64, 700), np.float32), w, None, NONE, packed) is None  # depths differ
    got = dense(np.ones((64, 784), np.float32), w, np.ones(512, np.float32), RELU, packed)
    np.testing.assert_array_equal(got, np.full((64, 512), 785, np.float32))
    got_t = dense(np.ones((64, 784), np.float32), np.ascontiguousarray(w.T), None, NONE, PackedWeights(None), True)
    np.testing.assert_array_equal(got_t, np.full((64, 512), 784, np.float32))

    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)  # BLAS on two threads: fewer rows go to np.matmul
    assert dense(np.ones((64, 784), np.float32), w, None, NONE, PackedWeights(None)) is None  # (256+: _split_rows)
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    monkeypatch.setattr(_packed_gemm._STATE, "wide", False)  # no AVX-512: np.matmul runs
    assert dense(np.ones((64, 784), np.float32), w, None, NONE, PackedWeights(None)) is None


def test_blas_threads_is_an_integer():
    assert _packed_gemm.blas_threads() >= 0


def _mismatched_packed(depth: int, n: int) -> list[np.ndarray]:
    good = pack_weights(np.ones((depth, n), np.float32))
    return [
        pack_weights(np.ones((depth - 1, n), np.float32)),  # too shallow: the tile would read past its end
        pack_weights(np.ones((depth, n - 32), np.float32)),  # a panel short
        good.astype(np.float64),
        good[:, :, :16],
        good.reshape(good.shape[0], -1),
        good[:, ::-1],  # not C-contiguous
    ]


@needs_kernel
def test_packed_weights_and_outputs_that_do_not_fit_are_refused(kernel):
    """The private tile entries hand addresses to the kernel: a caller's wrong packed or out gets None, no read
    or write outside the arrays."""
    from hubkit.ops import _nhwc_gather_gemm

    rows, depth, n = 20, 40, 70
    x = np.ones((rows, depth), np.float32)
    for packed in _mismatched_packed(depth, n):
        assert packed_matmul(x, packed, n) is None
    packed = pack_weights(np.ones((depth, n), np.float32))
    read_only = np.empty((rows, n), np.float32)
    read_only.flags.writeable = False
    for out in (np.empty((rows + 1, n), np.float32)[1:-1], np.empty((rows, n + 1), np.float32), read_only,
                np.empty((rows, 2 * n), np.float32)[:, ::2], np.empty((n, rows), np.float32).T,
                np.empty((2 * rows, n), np.float32)[::-2],
                np.frombuffer(bytearray(4 * rows * n + 1), np.float32, rows * n, offset=1).reshape(rows, n)):
        assert packed_matmul(x, packed, n, out=out) is None, out.strides
    assert np.array_equal(packed_matmul(x, packed, n), np.full((rows, n), depth, np.float32))

    img = np.ones((1, 4, 5, 8), np.float32)  # a 1x1 convolution: k = 8, 20 pixels
    cols = np.empty(20 * 8, np.float32)
    for bad in _mismatched_packed(8, n):
        assert not _nhwc_gather_gemm.gathered_tile_conv(img, bad, None, 0, (1, 1), (1, 1), (1, 1), (0, 0), (4, 5),
                                                         np.empty((20, n), np.float32), cols, 20)
    y2 = np.empty((20, n), np.float32)
    assert _nhwc_gather_gemm.gathered_tile_conv(img, pack_weights(np.ones((8, n), np.float32)), None, 0, (1, 1),
                                                (1, 1), (1, 1), (0, 0), (4, 5), y2, cols, 20)
    assert np.array_equal(y2, np.full((20, n), 8, np.float32))


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_a_prepared_dense_call_gives_dense_bits_and_refuses_what_changed(kernel, monkeypatch, threads, transpose_b):
    """prepare_dense after a dense() that ran: the same bits for the same input shape, bias array and thread count;
    None (nothing computed) for another shape, dtype, layout, bias array or thread count; weights written between
    calls (training) give None, and dense() alone decides when they have settled and packs them again."""
    if not _packed_gemm._tile_host():
        pytest.skip("dense() runs the kernel with AVX-512 or AVX2 tiles only")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: threads)
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: True)  # 8-lane tiles' limits on either host
    import hubkit as hk

    rng = np.random.default_rng(11)
    w0 = rng.standard_normal((96, 70)).astype(np.float32)
    var = hk.Variable(np.ascontiguousarray(w0.T) if transpose_b else w0, name="w")
    packed = PackedWeights(var)
    bias = rng.standard_normal(70).astype(np.float32)
    a = rng.standard_normal((40, 96)).astype(np.float32)
    want = dense(a, var.value, bias, RELU, packed, transpose_b)
    assert want is not None
    call = _packed_gemm.prepare_dense(a, var.value, bias, RELU, packed, transpose_b)
    assert call is not None
    got = call(a, var.value, bias)
    assert got is not None and got.tobytes() == want.tobytes()
    for other in (a[:39].copy(), a.astype(np.float64), np.asfortranarray(a), a.tolist()):
        assert call(other, var.value, bias) is None
    assert call(a, var.value, bias.copy()) is None  # another bias array: checked again by the caller
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 3 - threads)
    assert call(a, var.value, bias) is None
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: threads)
    var.assign(np.zeros_like(var.value))  # written: the prepared call packs nothing and leaves it to dense()
    assert call(a, var.value, bias) is None and call(a, var.value, bias) is None
    assert dense(a, var.value, bias, RELU, packed, transpose_b) is None  # not settled yet: np.matmul's
    assert dense(a, var.value, bias, RELU, packed, transpose_b) is not None  # settled: packed again
    settled = call(a, var.value, bias)
    assert settled is not None and settled.tobytes() == np.maximum(np.broadcast_to(bias, (40, 70)), 0).tobytes()
    assert _packed_gemm.prepare_dense(np.asfortranarray(a), var.value, bias, RELU, packed, transpose_b) is None


@needs_kernel
def test_a_prepared_dense_call_refuses_weights_of_another_shape_or_dtype(kernel, monkeypatch):
    """The weights' packed form is the kernel's whole read: weights of another shape or dtype than the prepared
    call's (a step handed other weights) give None, never a read past the smaller packing; a fused step then
    computes the new product the general way."""
    if not _packed_gemm._tile_host():
        pytest.skip("dense() runs the kernel with AVX-512 or AVX2 tiles only")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    from hubkit.runtime.optimize import FusedLinear

    class Node:
        op = "MatMul"

    rng = np.random.default_rng(2)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    step = FusedLinear([Node()], {}, False, None, weights=None)
    w1 = rng.standard_normal((512, 256)).astype(np.float32)
    step(a, w1)
    call = step._dense
    assert call is not None
    for w2 in (rng.standard_normal((512, 4)).astype(np.float32), w1.astype(np.float64), w1[:, :128].copy()):
        assert call(a, w2, None) is None and call(a, w2, None) is None
        for _ in range(2):
            got = step(a, w2)
            assert got.shape == (512, w2.shape[1]) and got.dtype == np.result_type(a, w2)
            np.testing.assert_allclose(got, a.astype(np.float64) @ w2, rtol=1e-3, atol=1e-2)


def test_ready_gives_the_kept_form_and_notes_nothing():
    """DerivedWeights.ready: the form kept for the same array at the same version, else None, without packing or
    noting: get(settled=True)'s count of unchanged calls is not moved by it (training packs nothing per step)."""
    import hubkit as hk

    v = hk.Variable(np.ones((4, 3), np.float32), name="w")
    cache = PackedWeights(v)
    assert cache.ready(v.value) is None
    form = cache.get(v.value)
    assert cache.ready(v.value) is form and cache.ready(v.value.copy()) is None
    v.assign(np.zeros((4, 3), np.float32))
    assert cache.ready(v.value) is None
    assert cache.get(v.value, settled=True) is None  # written since: noted, not packed
    assert cache.ready(v.value) is None  # asking ready() in between does not settle them
    v.assign(np.ones((4, 3), np.float32))
    assert cache.get(v.value, settled=True) is None  # written again: still not packed


@needs_kernel
@pytest.mark.parametrize(("mr_max", "lanes"), [(13, 16), (6, 8)], ids=["avx512-form", "avx2-form"])
def test_wrapping_tiles_of_either_form_read_the_rows_they_are_given(kernel, mr_max, lanes):
    """``hk_swrap_tile`` of both IR forms, compiled for this host (the 16-lane form runs on AVX2 as vector pairs,
    so the AVX-512 host's 13-row tiles are checked here too): at every tile height, row i of A lies ``lda``
    floats after row i - 1, plus ``wrap`` where it starts an output row (``width`` pixels, the first at column
    ``col0``), over two runs of A ``tstride`` apart, with a prefetch stream and without; against NumPy in float64."""
    import ctypes

    import llvmlite.binding as llvm

    _gemm_kernel._init_llvm()
    name, features = _gemm_kernel._host_features()
    module = llvm.parse_assembly(_gemm_kernel.kernel_ir(mr_max, lanes))
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(cpu=name, features=features, opt=2)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    tile = ctypes.CFUNCTYPE(None, *[ctypes.c_int64] * 17)(engine.get_function_address("hk_swrap_tile"))
    rng = np.random.default_rng(mr_max)
    k, n, lda, tstride = 7, 45, 9, 300  # two runs of 7 steps; 45 columns: a full panel and a masked one
    w = rng.standard_normal((2 * k, n)).astype(np.float32)
    packed = pack_weights(w)
    bias = rng.standard_normal(n).astype(np.float32)
    a = rng.standard_normal(2000).astype(np.float32)
    for mr in range(1, mr_max + 1):
        for width, col0, wrap in ((-1, 0, 0), (5, 3, 11), (2, 1, -4), (1, 0, 6)):
            offsets, col, off = [], col0, 0
            for _ in range(mr):
                offsets.append(off)
                col += 1
                off += lda + (wrap if col == width else 0)
                col = 0 if col == width else col
            rows = np.stack([np.concatenate([a[50 + o : 50 + o + k], a[50 + o + tstride : 50 + o + tstride + k]])
                             for o in offsets]).astype(np.float64)
            want = np.maximum(rows @ w.astype(np.float64) + bias, 0)
            got = []
            for pf in (packed.ctypes.data, 0):  # the main loop with a prefetch stream and the one without
                c = np.full((mr, n + 3), np.nan, np.float32)
                tile(mr, 2, tstride, k, a.ctypes.data + 200, lda, packed.ctypes.data, 2 * k * 32, c.ctypes.data, n + 3,
                     n, _gemm_kernel.BIAS_COLS | _gemm_kernel.RELU, bias.ctypes.data, pf, col0, width, wrap)
                np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-5)
                assert np.isnan(c[:, n:]).all()  # nothing past the columns
                got.append(c)
            np.testing.assert_array_equal(got[0], got[1])  # the same FMAs in the same order
    del engine
