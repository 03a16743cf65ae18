"""The epilogue's ``prange`` form (hubkit/ops/_threads.py): bit for bit the one-thread kernel, fork- and thread-safe."""

import multiprocessing
import threading

import numpy as np
import pytest

from hubkit.ops import _numba, _threads
from hubkit.ops._epilogue import RELU, RELU6, bias_act_

pytestmark = pytest.mark.skipif(not _numba.numba_enabled(), reason="Numba kernels are off")


@pytest.fixture
def two_threads():
    _threads.set_num_threads(2)
    yield
    _threads.set_num_threads(None)


def _case(rng, rows, cols, dtype):
    out = rng.standard_normal((rows, cols)).astype(dtype) * 4
    out.flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
    return out, rng.standard_normal(cols).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [256, 257, 1031])
@pytest.mark.parametrize("act", [0, RELU, RELU6])
def test_parallel_epilogue_equals_one_thread(two_threads, rng, dtype, rows, act):
    out, bias = _case(rng, rows, 512, dtype)
    for b in (bias, None):
        _threads.set_num_threads(1)
        one = bias_act_(out.copy(), b, act)
        _threads.set_num_threads(2)
        two = bias_act_(out.copy(), b, act)
        assert one.tobytes() == two.tobytes()  # NaN, signed zeros and all


def test_thread_count_follows_settings(monkeypatch):
    for var in _threads._ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert _threads.set_num_threads(None) == 1
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    assert _threads.set_num_threads(None) == 3
    assert _threads.set_num_threads(2) == 2
    with pytest.raises(ValueError, match="positive integer"):
        _threads.set_num_threads(0)
    _threads.set_num_threads(None)


def test_concurrent_callers_get_right_results(two_threads, rng):
    out, bias = _case(rng, 1024, 512, np.float32)
    want = bias_act_(out.copy(), bias, RELU)
    errors = []

    def work():
        for _ in range(20):
            got = bias_act_(out.copy(), bias, RELU)
            if got.tobytes() != want.tobytes():
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def _child(conn, out, bias):
    conn.send(bias_act_(out, bias, RELU).tobytes())


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_forked_child_after_a_parallel_launch(two_threads, rng):
    out, bias = _case(rng, 1024, 512, np.float32)
    want = bias_act_(out.copy(), bias, RELU)  # the parent launches a parallel kernel first
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child, args=(child, out.copy(), bias))
    p.start()
    assert parent.poll(30), "the forked child did not answer"
    assert parent.recv() == want.tobytes()
    p.join(30)
    assert p.exitcode == 0
