"""Winograd F(4x4, 3x3) with compiled transforms, against a float64 direct convolution."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hubkit.ops import _numba, _winograd43, conv_fused
from hubkit.ops._epilogue import NONE, RELU, RELU6
from tests.ops.test_conv_winograd import reference_conv3x3

pytestmark = pytest.mark.skipif(not _numba.numba_enabled(), reason="numba is not installed")


_direct = reference_conv3x3  # float64, 9 shifted products: an independent reference


def _each_block_budget(monkeypatch):
    """Runs the loop body with one block, a tile row at a time, and blocks as large as the transformed filters
    (a few tiles or images)."""
    for block_bytes, max_bytes in (
        (_winograd43.BLOCK_BYTES, _winograd43.MAX_BLOCK_BYTES),
        (1, 1),
        (1, 1 << 30),
    ):
        monkeypatch.setattr(_winograd43, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(_winograd43, "MAX_BLOCK_BYTES", max_bytes)
        yield


@pytest.mark.parametrize(
    ("n", "h", "w", "c", "k", "pads"),
    [
        (1, 4, 4, 1, 1, ((1, 1), (1, 1))),
        (2, 9, 7, 3, 5, ((1, 1), (1, 1))),
        (3, 10, 13, 16, 8, ((0, 0), (0, 0))),
        (2, 8, 8, 32, 64, ((0, 1), (0, 1))),
        (5, 17, 6, 20, 12, ((2, 2), (1, 0))),
    ],
)
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_a_float64_direct_convolution(n, h, w, c, k, pads, act, dtype, monkeypatch):
    rng = np.random.default_rng(h * 100 + c)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    filters = rng.standard_normal((3, 3, c, k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    ref = _direct(x, filters, pads) + bias
    ref = {NONE: ref, RELU: np.maximum(ref, 0), RELU6: np.clip(ref, 0, 6)}[act]
    bound = _direct(np.abs(x), np.abs(filters), pads) + np.abs(bias)  # sum |x| |w| per output
    eps = np.finfo(dtype).eps
    for _ in _each_block_budget(monkeypatch):
        out = np.empty(ref.shape, dtype)
        u = _winograd43.filter_transform(filters, np.dtype(dtype))
        assert _winograd43.conv3x3_bias_act(x, u, bias, act, pads, out)
        assert np.all(np.abs(out - ref) <= 64 * eps * bound)


def test_nan_propagates_and_the_fused_kernel_uses_it():
    x = np.ones((16, 16, 16, 16), np.float32)  # 256 tiles
    x[0, 2, 2, 3] = np.nan
    filters = np.ones((3, 3, 16, 2), np.float32)
    assert conv_fused._use_f43(x, (3, 3), (1, 1), (1, 1), (16, 16), np.dtype(np.float32))
    out = conv_fused.conv2d_bias_act(x, filters, None, RELU, (1, 1), (1, 1), "SAME")
    got = np.isnan(out[0]).any(axis=-1)
    # Every output whose window holds the NaN is NaN; as with any Winograd kernel the transforms
    # spread it over the outputs of the 4x4 tiles whose 6x6 inputs hold it, and no further.
    assert got[1:4, 1:4].all()
    assert not got[4:].any() and not got[:, 4:].any()


def test_off_without_numba():
    _numba.set_numba_enabled(False)
    try:
        x = np.ones((1, 4, 4, 16), np.float32)
        u = _winograd43.filter_transform(np.ones((3, 3, 16, 2), np.float32), np.dtype(np.float32))
        assert not _winograd43.conv3x3_bias_act(
            x, u, None, NONE, ((1, 1), (1, 1)), np.empty((1, 4, 4, 2), np.float32)
        )
        assert not conv_fused._use_f43(x, (3, 3), (1, 1), (1, 1), (4, 4), np.dtype(np.float32))
    finally:
        _numba.set_numba_enabled(None)


def _pool2(y: np.ndarray) -> np.ndarray:
    """2x2 stride-2 VALID max pool of NHWC ``y`` (float64 reference)."""
    n, h, w, k = y.shape
    return y[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, k).max(axis=(2, 4))


@pytest.mark.parametrize(
    ("n", "h", "w", "c", "k", "pads"),
    [
        (1, 4, 4, 1, 1, ((1, 1), (1, 1))),  # SAME
        (2, 9, 7, 3, 5, ((1, 1), (1, 1))),  # odd sizes: the last row/column is dropped by the pool
        (3, 10, 13, 16, 8, ((0, 0), (0, 0))),  # VALID
        (2, 8, 8, 32, 64, ((0, 1), (0, 1))),
        (5, 17, 6, 20, 12, ((2, 2), (1, 0))),
        (1, 5, 5, 3, 2, ((0, 0), (0, 0))),  # 3x3 output: one pooled pixel
    ],
)
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_pool_matches_a_float64_direct_convolution(n, h, w, c, k, pads, act, dtype, monkeypatch):
    rng = np.random.default_rng(h * 100 + c + 7)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    filters = rng.standard_normal((3, 3, c, k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    ref = _direct(x, filters, pads) + bias
    ref = _pool2({NONE: ref, RELU: np.maximum(ref, 0), RELU6: np.clip(ref, 0, 6)}[act])
    # the bound of the pooled value: the largest sum |x| |w| of the window's four outputs
    bound = _pool2(_direct(np.abs(x), np.abs(filters), pads) + np.abs(bias))
    eps = np.finfo(dtype).eps
    for _ in _each_block_budget(monkeypatch):
        out = np.empty(ref.shape, dtype)
        u = _winograd43.filter_transform(filters, np.dtype(dtype))
        assert _winograd43.conv3x3_bias_act_max_pool2(x, u, bias, act, pads, out)
        assert np.all(np.abs(out - ref) <= 64 * eps * bound)
    out = np.empty(ref.shape, dtype)
    assert _winograd43.conv3x3_bias_act_max_pool2(x, u, None, act, pads, out)  # no bias
    ref = _pool2(
        {NONE: lambda y: y, RELU: lambda y: np.maximum(y, 0), RELU6: lambda y: np.clip(y, 0, 6)}[act](
            _direct(x, filters, pads)
        )
    )
    assert np.all(np.abs(out - ref) <= 64 * eps * bound)


def test_fused_pool_refuses_what_it_cannot_do():
    x = np.ones((1, 6, 6, 4), np.float32)
    u = _winograd43.filter_transform(np.ones((3, 3, 4, 2), np.float32), np.dtype(np.float32))
    assert not _winograd43.conv3x3_bias_act_max_pool2(
        x, u, None, NONE, ((3, 0), (1, 1)), np.empty((1, 3, 3, 2), np.float32)
    )
    assert not _winograd43.conv3x3_bias_act_max_pool2(
        x, u, None, NONE, ((1, 1), (1, 1)), np.empty((1, 6, 6, 2), np.float32)
    )


@pytest.mark.parametrize(
    ("size", "padding", "pool_padding"),
    [(16, "SAME", "VALID"), (17, "VALID", "VALID"), (18, "SAME", "SAME"), (17, "SAME", "SAME")],
)
def test_conv_fused_pool_uses_the_fused_transform_and_matches_the_chunked_path(
    size, padding, pool_padding, monkeypatch
):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((16, size, size, 16)).astype(np.float32)  # >= 256 tiles
    filters = rng.standard_normal((3, 3, 16, 24)).astype(np.float32)
    bias = rng.standard_normal(24).astype(np.float32)
    args = (x, filters, bias, RELU, (1, 1), (1, 1), padding, (2, 2), (2, 2), pool_padding)
    calls = []
    real = _winograd43.conv3x3_bias_act_max_pool2
    monkeypatch.setattr(_winograd43, "conv3x3_bias_act_max_pool2", lambda *a: calls.append(1) or real(*a))
    got = conv_fused.conv2d_bias_act_max_pool(*args)
    fused = bool(calls)
    monkeypatch.setattr(_winograd43, "conv3x3_bias_act_max_pool2", lambda *a: False)
    want = conv_fused.conv2d_bias_act_max_pool(*args)  # the chunked path: F(4x4, 3x3) then the pool kernel
    assert fused == ((size, pool_padding) != (17, "SAME"))  # SAME pooling of an odd size pads: not fused
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


# -- the 36 products on hubkit's tile GEMM (Filters, enough channels, one BLAS thread) ----------------------
_packed_gemm_ok = pytest.mark.skipif(
    not __import__("hubkit.ops._packed_gemm", fromlist=["available"]).available(), reason="no tile GEMM here"
)


@_packed_gemm_ok
@pytest.mark.parametrize(
    ("n", "h", "w", "c", "k", "pads"),
    [
        (1, 12, 12, 64, 96, ((1, 1), (1, 1))),  # at the thresholds; K not a multiple of 32 after 64
        (2, 9, 7, 70, 130, ((1, 1), (1, 1))),  # odd sizes, a 2-column last panel
        (1, 16, 8, 300, 128, ((0, 0), (1, 0))),  # depth above the kernel's depth block (balanced blocks)
    ],
)
@pytest.mark.parametrize("pool", [False, True])
def test_filters_on_the_tile_gemm_match_the_reference_and_numpy(n, h, w, c, k, pads, pool, monkeypatch):
    rng = np.random.default_rng(c + k + h)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    filters = rng.standard_normal((3, 3, c, k)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    ref = _direct(x, filters, pads) + bias
    bound = _direct(np.abs(x), np.abs(filters), pads) + np.abs(bias)
    ref = np.maximum(ref, 0)
    if pool:
        ref, bound = _pool2(ref), _pool2(bound)
    run = _winograd43.conv3x3_bias_act_max_pool2 if pool else _winograd43.conv3x3_bias_act
    u = _winograd43.filter_transform(filters, np.dtype(np.float32))
    prepared = _winograd43.Filters(u)
    used = []
    real = _winograd43._multiply

    def spy(v, uu, m, split=False):
        used.append(isinstance(uu, _winograd43.Filters))
        return real(v, uu, m, split)

    monkeypatch.setattr(_winograd43, "_multiply", spy)
    monkeypatch.setattr(_winograd43, "_tile_gemm_applies", lambda split=False: True)
    eps = np.finfo(np.float32).eps
    for _ in _each_block_budget(monkeypatch):
        tiled, plain = np.empty(ref.shape, np.float32), np.empty(ref.shape, np.float32)
        assert run(x, prepared, bias, RELU, pads, tiled)
        assert run(x, u, bias, RELU, pads, plain)  # an array: one batched np.matmul
        assert np.all(np.abs(tiled - ref) <= 64 * eps * bound)
        assert np.all(np.abs(tiled - plain) <= 64 * eps * bound)
    assert any(used)
    assert prepared.packed() is prepared.packed()  # packed once


def test_filters_below_the_thresholds_or_with_two_blas_threads_unsplit_use_numpy(monkeypatch):
    """The tile GEMM takes the 36 products where it pays (enough channels and filters) and runs on one thread of
    ours: one BLAS thread, or two with the layer split over two threads of ours (its tile rows at one image)."""
    from hubkit.ops import _packed_gemm

    calls = []
    monkeypatch.setattr(_packed_gemm, "batched_matmul", lambda *a: calls.append(1) or False)
    cases = ((32, 128, 1, True, False), (64, 64, 1, True, False), (64, 128, 2, False, False), (64, 128, 2, True, True))
    for c, k, threads, two, tile in cases:
        monkeypatch.setattr(_packed_gemm, "blas_threads", lambda t=threads: t)
        monkeypatch.setattr(_winograd43, "two_threads", lambda two=two: two)
        x = np.ones((1, 8, 8, c), np.float32)
        u = _winograd43.Filters(_winograd43.filter_transform(np.ones((3, 3, c, k), np.float32), np.dtype(np.float32)))
        out = np.empty((1, 8, 8, k), np.float32)
        del calls[:]
        assert _winograd43.conv3x3_bias_act(x, u, None, NONE, ((1, 1), (1, 1)), out)
        np.testing.assert_allclose(out[0, 3, 3], 9 * c, rtol=1e-5)
        assert bool(calls) == (tile and _packed_gemm._tile_host() and _packed_gemm.available()), (c, k, threads, two)


def test_batched_matmul_refuses_what_it_cannot_take():
    from hubkit.ops import _packed_gemm

    a = np.ones((3, 5, 4), np.float32)
    packed = _packed_gemm.pack_batch(np.ones((3, 4, 7), np.float32))
    assert not _packed_gemm.batched_matmul(a.astype(np.float64), packed, np.empty((3, 5, 7), np.float32))
    assert not _packed_gemm.batched_matmul(a, packed, np.empty((2, 5, 7), np.float32))  # slice count
    assert not _packed_gemm.batched_matmul(a, packed, np.empty((3, 5, 40), np.float32))  # more columns than packed
    strided = np.ones((3, 5, 8), np.float32)[:, :, ::2]  # the right shape, not contiguous
    assert not _packed_gemm.batched_matmul(strided, packed, np.empty((3, 5, 7), np.float32))
    assert not _packed_gemm.batched_matmul(a, packed.astype(np.float64), np.empty((3, 5, 7), np.float32))
    assert not _packed_gemm.batched_matmul(a, packed[..., :16], np.empty((3, 5, 7), np.float32))  # not 32 wide
    w = np.random.default_rng(1).standard_normal((3, 4, 40)).astype(np.float32)
    for p in range(3):
        np.testing.assert_array_equal(_packed_gemm.pack_batch(w)[p], _packed_gemm.pack_weights(w[p]))
    out = np.empty((3, 5, 7), np.float32)
    if _packed_gemm.available():
        assert _packed_gemm.batched_matmul(a, packed, out)
        np.testing.assert_array_equal(out, 4.0)


def test_filters_keep_one_form():
    """Asking for the packed form drops the array and the other way round; both give the same values."""
    u = np.random.default_rng(3).standard_normal((36, 5, 70)).astype(np.float32)
    f = _winograd43.Filters(u.copy())
    assert f.shape == u.shape
    packed = f.packed()
    assert f._forms[0] is None and packed.shape == (36, 3, 5, 32)
    np.testing.assert_array_equal(f.u, u)  # unpacked again, padding columns dropped
    assert f._forms[1] is None and f.u.flags.c_contiguous
    np.testing.assert_array_equal(f.packed(), packed)


@pytest.mark.parametrize("pool", [False, True])
def test_blocks_on_two_threads_match_the_reference(pool, monkeypatch):
    """With two BLAS threads the image chunks are shared with a second thread: each writes its own images."""
    import threading

    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 12, 10, 24)).astype(np.float32)
    filters = rng.standard_normal((3, 3, 24, 16)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    pads = ((1, 1), (1, 1))
    ref = np.maximum(_direct(x, filters, pads) + bias, 0)
    bound = _direct(np.abs(x), np.abs(filters), pads) + np.abs(bias)
    if pool:
        ref, bound = _pool2(ref), _pool2(bound)
    run = _winograd43.conv3x3_bias_act_max_pool2 if pool else _winograd43.conv3x3_bias_act
    threads = set()
    real = _winograd43._multiply

    def spy(v, uu, m, split=False):
        threads.add(threading.current_thread().name)
        return real(v, uu, m, split)

    monkeypatch.setattr(_winograd43, "_multiply", spy)
    monkeypatch.setattr(_winograd43, "two_threads", lambda: True)
    monkeypatch.setattr(_winograd43, "BLOCK_BYTES", 1)  # one image per chunk: five chunks
    monkeypatch.setattr(_winograd43, "MAX_BLOCK_BYTES", 1)
    u = _winograd43.filter_transform(filters, np.dtype(np.float32))
    out = np.empty(ref.shape, np.float32)
    assert run(x, u, bias, RELU, pads, out)
    assert np.all(np.abs(out - ref) <= 64 * np.finfo(np.float32).eps * bound)
    assert "hubkit-chunks" in threads and len(threads) == 2


@pytest.mark.parametrize(("n", "size", "c", "k"), [(1, 20, 64, 64), (1, 9, 16, 40), (2, 6, 8, 33)])
def test_one_block_of_images_splits_its_tile_rows_over_two_threads(monkeypatch, n, size, c, k):
    """With two threads and one block of images (one image, say), the halves of its tile rows run on the caller and
    the helper thread: the same values as on one thread, within the summation-order tolerance of the products."""
    from hubkit.ops import _chunks

    rng = np.random.default_rng(size + c)
    x = rng.standard_normal((n, size, size, c)).astype(np.float32)
    u = _winograd43.Filters(_winograd43.filter_transform(rng.standard_normal((3, 3, c, k)).astype(np.float32),
                                                         np.dtype(np.float32)))
    bias = rng.standard_normal(k).astype(np.float32)
    outs = {}
    threads: list[str] = []
    real = _chunks.run_chunks

    def spy(starts, run, split):
        real(starts, lambda s: threads.append(threading.current_thread().name) or run(s), split)

    monkeypatch.setattr(_winograd43, "run_chunks", spy)
    for two in (False, True):
        monkeypatch.setattr(_winograd43, "two_threads", lambda two=two: two)
        out = np.full((n, size, size, k), np.nan, np.float32)
        assert _winograd43.conv3x3_bias_act(x, u, bias, RELU, ((1, 1), (1, 1)), out)
        outs[two] = out
    assert "hubkit-chunks" in threads
    np.testing.assert_allclose(outs[True], outs[False], rtol=1e-5, atol=1e-5 * float(np.abs(outs[False]).max()))
