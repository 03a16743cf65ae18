"""RecycledOutputs (ops/_scratch.py): large outputs reuse memory only when nothing references it."""

from __future__ import annotations

import threading

import numpy as np

from hubkit.ops._scratch import RecycledOutputs


def _addr(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_memory_is_reused_only_when_nothing_holds_it():
    pool = RecycledOutputs(min_bytes=1 << 10, max_bytes=1 << 30)
    a = pool.empty((64, 64), np.float32)
    assert a.shape == (64, 64) and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable
    a[...] = 1
    b = pool.empty((64, 64), np.float32)
    assert _addr(b) != _addr(a)  # a is alive
    first = _addr(a)
    del a
    c = pool.empty((64, 64), np.float32)
    assert _addr(c) == first
    view = c[3:, ::2]
    del c
    d = pool.empty((64, 64), np.float32)
    assert _addr(d) != first  # a view of it is alive
    del view
    e = pool.empty((63, 64), np.float32)  # a little smaller: the same memory
    assert _addr(e) == first
    f = pool.empty((16, 64), np.float64)  # half the bytes of the buffers: each is more than 2x its size
    assert _addr(f) not in (first, _addr(b), _addr(d))
    del b, d, e, f


def test_small_requests_and_the_switch_take_fresh_memory():
    pool = RecycledOutputs(min_bytes=1 << 20, max_bytes=1 << 30)
    a = pool.empty((10,), np.float64)
    assert a.shape == (10,) and not hasattr(pool._local, "bufs")
    pool.enabled = False
    b = pool.empty((1 << 20,), np.float32)
    assert b.nbytes == 4 << 20 and not hasattr(pool._local, "bufs")


def test_total_is_capped_by_forgetting_free_buffers():
    pool = RecycledOutputs(min_bytes=1, max_bytes=3 * 4096)
    held = [pool.empty((1024,), np.float32) for _ in range(5)]  # all held: none can be forgotten
    assert len(pool._local.bufs) == 5
    del held[:4]
    pool.empty((2048,), np.float32)  # a new size: free buffers go until the total fits
    assert sum(b.nbytes for b in pool._local.bufs) <= 3 * 4096


def test_each_thread_has_its_own_buffers():
    pool = RecycledOutputs(min_bytes=1, max_bytes=1 << 30)
    a = pool.empty((256,), np.float32)
    first = _addr(a)
    del a
    seen = []
    t = threading.Thread(target=lambda: seen.append(_addr(pool.empty((256,), np.float32))))
    t.start()
    t.join()
    assert seen[0] != first  # another thread's store: it allocates its own
    assert len(pool._local.bufs) == 1
    assert _addr(pool.empty((256,), np.float32)) == first
