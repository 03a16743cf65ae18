"""Dense layers of many rows on two threads (ops/_split_rows.py): bit for bit the one-thread tile GEMM."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import _packed_gemm, _split_rows, _worker_pool
from hubkit.ops._epilogue import NONE, RELU, RELU6
from tests.helpers_threads import from_threads

pytestmark = pytest.mark.skipif(
    not (_worker_pool.available() and _packed_gemm.available() and _split_rows.job_address()),
    reason="needs the tile GEMM and the worker pool (x86-64 Linux, numba, llvmlite)",
)


def _layer(rng, rows, depth, cols):
    x = rng.standard_normal((rows, depth)).astype(np.float32)
    w = rng.standard_normal((depth, cols)).astype(np.float32)
    return x, w, rng.standard_normal(cols).astype(np.float32)


@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize(
    ("rows", "depth", "cols"), [(16, 64, 64), (17, 300, 70), (64, 784, 512), (65, 512, 10), (300, 257, 33), (1000, 64, 96)]
)
def test_same_bits_as_the_one_thread_tile_gemm(rows, depth, cols, act):
    rng = np.random.default_rng(rows + depth + cols)
    x, w, b = _layer(rng, rows, depth, cols)
    packed = _packed_gemm.pack_weights(w)
    for bias in (b, None):
        got = _split_rows.split_rows(x, packed, cols, bias, act)
        want = _packed_gemm.packed_matmul(x, packed, cols, bias, act)
        assert got is not None and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("act", [NONE, RELU])
def test_into_a_channel_slice_and_accumulating(act):
    """``out`` with rows further apart (a concatenation's channels), and ``accumulate`` (a residual in place)."""
    rng = np.random.default_rng(2)
    x, w, b = _layer(rng, 45, 96, 40)
    packed = _packed_gemm.pack_weights(w)
    big = np.full((45, 50), 7.0, np.float32)
    got = _split_rows.split_rows(x, packed, 40, b, act, out=big[:, 3:43])
    assert got is not None and np.shares_memory(got, big)
    assert got.tobytes() == _packed_gemm.packed_matmul(x, packed, 40, b, act).tobytes()
    assert (big[:, :3] == 7).all() and (big[:, 43:] == 7).all()
    res = rng.standard_normal((45, 40)).astype(np.float32)
    want = _packed_gemm.packed_matmul(x, packed, 40, b, act, res.copy(), accumulate=True)
    into = res.copy()
    assert _split_rows.split_rows(x, packed, 40, b, act, out=into, accumulate=True) is into
    assert into.tobytes() == want.tobytes()


def test_nan_and_negative_zero_go_through():
    rng = np.random.default_rng(1)
    x, w, b = _layer(rng, 64, 96, 64)
    x[3, 5] = np.nan
    b[:] = -0.0
    packed = _packed_gemm.pack_weights(w)
    got = _split_rows.split_rows(x, packed, 64, b, RELU)
    want = _packed_gemm.packed_matmul(x, packed, 64, b, RELU)
    assert got.tobytes() == want.tobytes() and np.isnan(got[3]).all()


def test_what_it_refuses():
    rng = np.random.default_rng(2)
    x, w, b = _layer(rng, 64, 96, 64)
    packed = _packed_gemm.pack_weights(w)
    assert _split_rows.split_rows(x[:15], packed, 64, b, RELU) is None  # too few rows
    assert _split_rows.split_rows(np.asfortranarray(x), packed, 64, b, RELU) is None  # not C-contiguous
    pool = _worker_pool.get_pool()
    assert pool.acquire()
    try:  # the pool busy with another caller: the layer goes elsewhere
        assert _split_rows.split_rows(x, packed, 64, b, RELU) is None
    finally:
        pool.release()


def test_outputs_it_cannot_write_are_refused():
    x, w, _ = _layer(np.random.default_rng(4), 32, 64, 40)
    packed = _packed_gemm.pack_weights(w)
    for out in (np.empty((32, 40), np.float64), np.empty((32, 41), np.float32), np.empty((40, 32), np.float32).T,
                np.empty((32, 80), np.float32)[:, ::2]):
        assert _split_rows.split_rows(x, packed, 40, None, NONE, out=out) is None
    assert _split_rows.split_rows(x, packed, 40, None, NONE, accumulate=True) is None  # nothing to add to
    assert _split_rows.split_rows(x.astype(np.float64), packed, 40, None, NONE) is None
    assert _split_rows.split_rows(x, packed, 40, None, NONE) is not None  # and the pool was released each time


def test_four_threads_at_once():
    rng = np.random.default_rng(3)
    layers = [_layer(rng, 64 + 7 * i, 128, 96) for i in range(4)]
    packs = [_packed_gemm.pack_weights(w) for _, w, _ in layers]
    wants = [_packed_gemm.packed_matmul(x, p, 96, b, RELU) for (x, _, b), p in zip(layers, packs)]
    bad: list[int] = []

    def run(i: int) -> None:
        x, _, b = layers[i]
        for _ in range(200):
            got = _split_rows.split_rows(x, packs[i], 96, b, RELU)
            if got is None:
                got = _packed_gemm.packed_matmul(x, packs[i], 96, b, RELU)  # what dense() falls back to
            if got.tobytes() != wants[i].tobytes():
                bad.append(i)

    from_threads(run, timeout=60)
    assert bad == []


def test_dense_splits_with_two_blas_threads(monkeypatch):
    rng = np.random.default_rng(4)
    x, w, b = _layer(rng, _packed_gemm.SPLIT_MIN_ROWS, 784, 512)
    calls = []
    real = _split_rows.split_rows
    monkeypatch.setattr(_split_rows, "split_rows", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)
    if not _packed_gemm._tile_host():
        pytest.skip("dense() takes the tile GEMM with AVX-512 or AVX2 tiles only")
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: True)  # 8-lane tiles: 16 to 1023 rows split
    few = np.ascontiguousarray(x[: _packed_gemm.NARROW_SPLIT_MIN_ROWS])
    got = _packed_gemm.dense(few, w, b, RELU, _packed_gemm.PackedWeights())
    assert calls == [1] and got is not None
    np.testing.assert_array_equal(got, _packed_gemm.packed_matmul(few, _packed_gemm.pack_weights(w), 512, b, RELU))
    assert _packed_gemm.dense(few[:-1], w, b, RELU, _packed_gemm.PackedWeights()) is None
    tall = np.repeat(x, -(-_packed_gemm.NARROW_DENSE_MAX_ROWS // len(x)), axis=0)
    assert _packed_gemm.dense(tall, w, b, RELU, _packed_gemm.PackedWeights()) is None and calls == [1]
    calls.clear()
    monkeypatch.setattr(_packed_gemm, "_narrow_host", lambda: False)
    got = _packed_gemm.dense(x, w, b, RELU, _packed_gemm.PackedWeights())
    assert calls == [1] and got is not None
    np.testing.assert_array_equal(got, _packed_gemm.packed_matmul(x, _packed_gemm.pack_weights(w), 512, b, RELU))
    assert _packed_gemm.dense(x[:-1], w, b, RELU, _packed_gemm.PackedWeights()) is None  # below SPLIT_MIN_ROWS
    shallow = np.ascontiguousarray(x[:, :32])
    assert _packed_gemm.dense(shallow, w[:32], b, RELU, _packed_gemm.PackedWeights()) is None  # depth < MIN_DEPTH
    narrow = _packed_gemm.dense(x, w[:, :10], b[:10], 0, _packed_gemm.PackedWeights())  # any width is split
    np.testing.assert_array_equal(narrow, _packed_gemm.packed_matmul(x, _packed_gemm.pack_weights(w[:, :10]), 10, b[:10], 0))


def test_packed_weights_that_do_not_fit_are_refused():
    x, w, _ = _layer(np.random.default_rng(5), 32, 64, 40)
    packed = _packed_gemm.pack_weights(w)
    for bad in (_packed_gemm.pack_weights(w[:-1]), packed[:, :, :8], packed.astype(np.float64), packed[:, ::-1],
                _packed_gemm.pack_weights(w[:, :8])):
        assert _split_rows.split_rows(x, bad, 40, None, NONE) is None
    assert _split_rows.split_rows(x, packed, 40, None, NONE) is not None
