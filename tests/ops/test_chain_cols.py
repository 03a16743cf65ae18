"""The column-split dense chain at 1-2 rows (hubkit/ops/_chain_cols.py and its kernel).

Every output is checked bit for bit (NaN where it has NaN) against a loop over the depth in float32 NumPy
(tests/helpers_plans.py),
whichever thread runs which chunk: the worker, the caller alone (a pool whose worker never starts), or the worker
alone (its job run before the caller's). Nothing here waits without a bound: a pool call returns by construction.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from hubkit.ops import _chain_cols, _numba, _worker_pool
from hubkit.ops._epilogue import NONE, RELU, RELU6
from tests.helpers_plans import assert_loop_bits, depth_loop_reference
from tests.helpers_threads import from_threads, stolen_pool

pytestmark = pytest.mark.skipif(not _chain_cols.available(), reason="no worker pool here (needs x86-64 Linux, Numba)")


def _layers(rng, dims, acts, bias=True):
    layers = []
    for i in range(len(dims) - 1):
        w = (rng.standard_normal((dims[i], dims[i + 1])) * 0.2).astype(np.float32)
        b = rng.standard_normal(dims[i + 1]).astype(np.float32) if bias else None
        layers.append((w, b, acts[i % len(acts)]))
    return layers


def _prepare(layers):
    call = _chain_cols.prepare([(_chain_cols.pack_cols(w), w.shape[1], b, act) for w, b, act in layers])
    assert call is not None
    return call


def _run(x, call, pool=None):
    pool = pool or _worker_pool.get_pool()
    assert pool.acquire()
    try:
        return _chain_cols.run(x, call, pool)
    finally:
        pool.release()


@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("acts", [(RELU, RELU6, NONE), (NONE,), (RELU6, RELU)])
@pytest.mark.parametrize("dims", [(784, 512, 512, 10), (100, 130, 7), (64, 64), (5, 200, 1), (3, 65, 64, 129),
                                  (1001, 70), (7, 1)])
def test_bits_of_the_depth_loop(dims, acts, bias, rows):
    rng = np.random.default_rng(sum(dims) + rows)
    layers = _layers(rng, dims, acts, bias)
    x = rng.standard_normal((rows, dims[0])).astype(np.float32)
    call = _prepare(layers)
    want = depth_loop_reference(x, layers)
    for _ in range(3):
        assert_loop_bits(_run(x, call), want)
    assert all(call.sync[::8] == 2)  # every chunk's claim word ends DONE


def test_caller_alone_and_worker_alone_give_the_same_bits():
    rng = np.random.default_rng(1)
    layers = _layers(rng, (784, 512, 512, 10), (RELU, RELU, NONE))
    x = rng.standard_normal((1, 784)).astype(np.float32)
    call = _prepare(layers)
    want = depth_loop_reference(x, layers)
    stolen = stolen_pool()
    assert_loop_bits(_run(x, call, stolen), want)
    assert stolen.jobs == 0 and not stolen.started
    # the worker's side alone: its job runs to the end before the caller's starts, which then finds nothing free
    patch, job, _, _ = _chain_cols._code()
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(job)
    for first in (1, 0):
        out = np.full((1, 10), np.nan, np.float32)
        addr = patch(call.blocks, call.sync, x, out)
        assert addr
        fn(addr + first * call.blocks.strides[0])
        assert all(call.sync[::8] == 2)
        fn(addr + (1 - first) * call.blocks.strides[0])
        assert_loop_bits(out, want)


def test_nan_and_inf_propagate_as_in_the_loop():
    """Two NaNs meeting in a sum (a NaN input and an infinity times zero) give NaN, whichever of them is kept."""
    rng = np.random.default_rng(2)
    layers = _layers(rng, (300, 200), (NONE,))
    x = rng.standard_normal((2, 300)).astype(np.float32)
    x[1, 5] = np.nan  # row 1: every column NaN
    layers[0][0][7, 150] = np.inf  # column 150: +-inf in row 0, and NaN + (0 * inf) in row 1
    x[1, 7] = 0.0
    call = _prepare(layers)
    got = _run(x, call)
    assert_loop_bits(got, depth_loop_reference(x, layers))
    assert np.isnan(got[1]).all() and np.isinf(got[0, 150]) and np.isfinite(np.delete(got[0], 150)).all()
    two = _layers(rng, (300, 200, 70), (RELU, NONE))
    two[0][0][7, 150] = np.inf
    assert_loop_bits(_run(x, _prepare(two)), depth_loop_reference(x, two))


def test_calls_that_do_not_fit_run_nothing():
    rng = np.random.default_rng(3)
    layers = _layers(rng, (64, 128, 10), (RELU,))
    call = _prepare(layers)
    for x in (np.ones((3, 64), np.float32), np.ones((1, 63), np.float32), np.ones((0, 64), np.float32),
              np.ones((1, 64)), np.ones((1, 128), np.float32)[:, ::2], np.ones(64, np.float32),
              [[1.0] * 64]):
        assert _run(x, call) is None
    patch = _chain_cols._code()[0]
    assert patch(call.blocks, call.sync, np.ones((1, 64), np.float32), np.empty((1, 11), np.float32)) == 0
    assert patch(call.blocks, call.sync, np.ones((1, 64), np.float32), np.empty((2, 10), np.float32)) == 0
    two = np.ones((2, 64), np.float32)
    assert patch(call.blocks, call.sync, two[::-1], np.empty((2, 10), np.float32)) == 0  # rows read backwards
    assert patch(call.blocks, call.sync, two, np.empty((2, 10), np.float32)[::-1]) == 0  # rows written backwards
    assert patch(call.blocks, call.sync, two, np.empty((2, 20), np.float32)[:, ::2]) == 0
    assert patch(call.blocks, call.sync, np.ones((2, 64)), np.empty((2, 10), np.float32)) == 0  # 8-byte elements


def test_prepare_refuses_layers_that_do_not_fit():
    w1 = np.ones((8, 16), np.float32)
    w2 = np.ones((16, 4), np.float32)
    p1, p2 = _chain_cols.pack_cols(w1), _chain_cols.pack_cols(w2)
    assert _chain_cols.prepare([(p1, 16, None, RELU), (p2, 4, None, NONE)]) is not None
    assert _chain_cols.prepare([]) is None
    p15 = _chain_cols.pack_cols(np.ones((15, 4), np.float32))
    assert _chain_cols.prepare([(p1, 16, None, RELU), (p15, 4, None, NONE)]) is None  # depths not chained
    assert _chain_cols.prepare([(p1[:-1], 16, None, RELU)]) is None  # not a whole number of rows
    assert _chain_cols.prepare([(p1.astype(np.float64), 16, None, RELU)]) is None
    assert _chain_cols.prepare([(p1, 16, np.ones(15, np.float32), RELU)]) is None  # bias of another width
    assert _chain_cols.prepare([(p1, 16, np.ones(16), RELU)]) is None  # float64 bias
    assert _chain_cols.prepare([(p1, 0, None, RELU)]) is None


@pytest.mark.parametrize("cols", [1, 10, 64, 65, 130, 200])
def test_pack_cols_keeps_each_chunk_as_a_block(cols):
    w = np.arange(7 * cols, dtype=np.float32).reshape(7, cols)
    packed = _chain_cols.pack_cols(w)
    assert packed.shape == (7 * cols,) and packed.ctypes.data % 64 == 0
    for c0 in range(0, cols, _chain_cols.CHUNK_COLS):
        width = min(_chain_cols.CHUNK_COLS, cols - c0)
        np.testing.assert_array_equal(packed[c0 * 7 : (c0 + width) * 7].reshape(7, width), w[:, c0 : c0 + width])


def test_column_blocks_are_made_again_after_a_write():
    class Holder:
        _version = 0

    holder = Holder()
    blocks = _chain_cols.ColumnBlocks(holder)
    w = np.random.default_rng(4).standard_normal((50, 70)).astype(np.float32)
    first = blocks.get(w, settled=True)
    assert first is not None and blocks.get(w, settled=True) is first
    w[3] = 0
    holder._version += 1  # a write, as Variable._written notes it
    assert blocks.get(w, settled=True) is None  # not settled yet: the chain runs unsplit this call
    again = blocks.get(w, settled=True)
    assert again is not None and again is not first
    np.testing.assert_array_equal(again, _chain_cols.pack_cols(w))


def test_calls_from_four_threads():
    rng = np.random.default_rng(5)
    chains = []
    for i in range(4):
        layers = _layers(rng, (784, 512, 10), (RELU, NONE))
        x = rng.standard_normal((1 + i % 2, 784)).astype(np.float32)
        chains.append((x, _prepare(layers), depth_loop_reference(x, layers)))
    ran = [0]

    def work(k):
        pool = _worker_pool.get_pool()
        for i in range(100):
            x, call, want = chains[(k + i) % 4]
            if pool.acquire():  # else another thread has the pool (its caller then runs unsplit)
                try:
                    got = _chain_cols.run(x, call, pool)
                finally:
                    pool.release()
                assert_loop_bits(got, want)
                ran[0] += 1

    from_threads(work)
    assert ran[0] > 0


def test_not_available_with_numba_off(monkeypatch):
    monkeypatch.setattr(_numba._STATE, "enabled", False)
    assert not _chain_cols.available()
    assert _chain_cols.prepare([(_chain_cols.pack_cols(np.ones((4, 4), np.float32)), 4, None, NONE)]) is None
