"""Forms derived from a variable's value (packed weights, Winograd transforms) against writes and plans.

A write counts on both sides (``Variable._writable`` ... ``Variable._written``), so a form made while
the values were being written is not kept as current; a variable's forms are kept on the variable,
shared by every plan that reads it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _numba, _packed_gemm
from tests.helpers_plans import plain_and_optimised


def _dense_graph(rng):
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 96], name="x")
        w = hk.Variable(rng.standard_normal((96, 80)).astype(np.float32), name="w")
        y = hk.nn.relu(hk.nn.bias_add(hk.matmul(x, w), hk.constant(np.ones(80, np.float32))))
    return g, x, w, y


def _conv_graph(rng):
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 32, 32, 64], name="x")
        w = hk.Variable(rng.standard_normal((3, 3, 64, 96)).astype(np.float32) * 0.1, name="w")
        y = hk.nn.relu(hk.nn.bias_add(hk.nn.conv2d(x, w, strides=1, padding="SAME"), hk.constant(np.ones(96, np.float32))))
    return g, x, w, y


@pytest.mark.parametrize("build", [_dense_graph, _conv_graph])
def test_a_run_in_the_middle_of_a_write_is_not_kept(build, monkeypatch):
    """A plan run between the start and the end of a write (another thread's, here made deterministic)."""
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)  # the packed forms, where the host has them
    rng = np.random.default_rng(0)
    g, x, w, y = build(rng)
    plain, opt = plain_and_optimised(g, [y], [x])
    xv = rng.standard_normal((64 if len(x.shape) == 2 else 4, *x.shape[1:])).astype(np.float32)
    opt.run([xv])
    v = w._writable()  # the write begins ...
    opt.run([xv])  # ... a run derives forms from the values as they are ...
    v *= -1.5  # ... the write happens ...
    w._written()  # ... and ends
    want = plain.run([xv])[0]
    got = opt.run([xv])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("build", [_dense_graph, _conv_graph])
def test_an_optimizer_step_moves_the_version_after_its_write(build):
    rng = np.random.default_rng(1)
    g, x, w, y = build(rng)
    with g.as_default():
        train = hk.train.Adam(0.01).minimize(hk.reduce_mean(y))
    sess = hk.Session(g)
    before = w._version
    sess.run(train, {x: rng.standard_normal((2, *x.shape[1:])).astype(np.float32)})
    assert w._version >= before + 2 and w._version % 2 == before % 2  # begun and ended


def test_plans_share_a_variables_forms(monkeypatch):
    """Two plans of one graph (a Session's, for two fetch lists) hold one packed copy of the weights."""
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 1)
    rng = np.random.default_rng(2)
    g, x, w, y = _dense_graph(rng)
    with g.as_default():
        y2 = hk.multiply(y, 2.0)
    _, opt1 = plain_and_optimised(g, [y], [x])
    _, opt2 = plain_and_optimised(g, [y2], [x])
    xv = rng.standard_normal((64, 96)).astype(np.float32)  # 64 rows: the tile GEMM's
    a, b = opt1.run([xv])[0], opt2.run([xv])[0]
    np.testing.assert_allclose(b, 2 * a, rtol=1e-6)
    forms = w.__dict__.get("_derived_forms", {})
    if _packed_gemm._tile_host() and _packed_gemm.available() and _numba.numba_enabled():
        assert len(forms) == 1  # one packed form for both plans


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_lock_held_at_fork_is_fresh_in_the_child():
    """A thread compiling (holding a kernel lock) when another forks must not leave the child's lock held."""
    from hubkit.ops import _gemm_kernel

    for module in (_packed_gemm, _gemm_kernel, _numba):
        module._lock.acquire()
        try:
            pid = os.fork()
            if pid == 0:  # the child: the lock is a new one
                ok = module._lock.acquire(timeout=5)
                os._exit(0 if ok else 1)
        finally:
            module._lock.release()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, module.__name__


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_for_the_compilers_locks():
    """Numba's compiler lock and llvmlite's LLVM lock, held by another thread (compiling) when this one forks: the
    fork waits until they are given back, so the child finds them free (hubkit/ops/_forksafe.py)."""
    import threading
    import time

    import llvmlite.binding.ffi as ffi
    from numba.core import compiler_lock

    for lock in (compiler_lock.global_compiler_lock._lock, ffi.lib._lock._lock):
        held = threading.Event()

        def hold(lock=lock, held=held):
            with lock:
                held.set()
                time.sleep(0.2)

        thread = threading.Thread(target=hold)
        thread.start()
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: the lock is free (it would stay held for good had the fork not waited)
            ok = lock.acquire(timeout=5)
            os._exit(0 if ok else 1)
        thread.join(5)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_pool_compile_lock_is_fresh_in_a_forked_child():
    from hubkit.ops import _worker_pool

    with _worker_pool._code_lock:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if _worker_pool._code_lock.acquire(timeout=5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
