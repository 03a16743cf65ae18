"""Image chunks on two threads (ops/_chunks.py): NumPy's BLAS held at one thread while both halves run."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from hubkit.ops import _chunks, _packed_gemm

needs_openblas = pytest.mark.skipif(
    _packed_gemm._find_blas("set") is None or _packed_gemm._find_blas("get") is None,
    reason="NumPy's BLAS is not an OpenBLAS whose thread count can be set",
)


def _blas_threads() -> int:
    return int(_packed_gemm._find_blas("get")())


@pytest.fixture
def two_blas_threads():
    get, set_ = _packed_gemm._find_blas("get"), _packed_gemm._find_blas("set")
    before = int(get())
    set_(2)
    yield
    set_(before)


@needs_openblas
def test_both_halves_run_with_one_blas_thread_and_the_count_comes_back(two_blas_threads):
    seen: list[tuple[str, int]] = []

    def run(starts):
        np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)  # a BLAS call inside a half
        seen.append((threading.current_thread().name, _blas_threads()))

    _chunks.run_chunks([0, 1, 2, 3], run, True)
    assert sorted(n for _, n in seen) == [1, 1] and {name for name, _ in seen} >= {"hubkit-chunks"}
    assert _blas_threads() == 2
    _chunks.run_chunks([0, 1], lambda starts: seen.append(("one", _blas_threads())), False)
    assert seen[-1] == ("one", 2)  # not split: the BLAS keeps its threads


@needs_openblas
def test_nested_and_concurrent_holds_restore_once_and_errors_too(two_blas_threads):
    with _packed_gemm.blas_one_thread():
        with _packed_gemm.blas_one_thread():
            assert _blas_threads() == 1
        assert _blas_threads() == 1  # the outer block still holds it

        barrier = threading.Barrier(2, timeout=10)
        counts = []

        def other():
            with _packed_gemm.blas_one_thread():
                barrier.wait()
                counts.append(_blas_threads())
            barrier.wait()

        t = threading.Thread(target=other)
        t.start()
        barrier.wait()
        barrier.wait()  # the other thread has left its block; this one has not
        t.join(10)
        assert counts == [1] and _blas_threads() == 1
    assert _blas_threads() == 2

    def fails(starts):
        raise ValueError("a chunk failed")

    with pytest.raises(ValueError, match="a chunk failed"):
        _chunks.run_chunks([0, 1], fails, True)
    assert _blas_threads() == 2


@needs_openblas
def test_one_blas_thread_stays_one(monkeypatch):
    set_ = _packed_gemm._find_blas("set")
    before = _blas_threads()
    set_(1)
    try:
        monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: 2)  # a test's stub does not leak into the library
        with _packed_gemm.blas_one_thread():
            assert _blas_threads() == 1
        assert _blas_threads() == 1
    finally:
        set_(before)


@needs_openblas
def test_kernels_still_decide_by_the_count_held_back(two_blas_threads):
    with _packed_gemm.blas_one_thread():
        assert _blas_threads() == 1 and _packed_gemm.blas_threads() == 2  # another caller still splits
    assert _packed_gemm.blas_threads() == 2


@needs_openblas
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_child_forked_inside_a_hold_gets_its_threads_back(two_blas_threads):
    with _packed_gemm.blas_one_thread():
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code, never return into pytest
            code = 1
            try:
                ok = _blas_threads() == 2 and _packed_gemm._OneThread.depth == 0
                with _packed_gemm.blas_one_thread():
                    ok = ok and _blas_threads() == 1
                code = 0 if ok and _blas_threads() == 2 else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert _blas_threads() == 1  # the parent's hold is its own
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert _blas_threads() == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_one_helper_thread_serves_every_call_a_busy_one_leaves_the_chunks_to_the_caller_and_a_child_has_its_own():
    def names(starts_seen):
        return lambda starts: starts_seen.append((threading.current_thread().ident, tuple(starts)))

    first: list = []
    second: list = []
    _chunks.run_chunks([0, 1, 2, 3], names(first), True)
    _chunks.run_chunks([0, 1], names(second), True)
    helpers = {i for i, _ in first + second} - {threading.get_ident()}
    assert len(helpers) == 1 and sorted(s for _, s in first) == [(0, 1), (2, 3)]
    helper = _chunks._helper()
    assert helper.lock.acquire(blocking=False)  # another caller has the helper
    try:
        busy: list = []
        _chunks.run_chunks([0, 1, 2], names(busy), True)
        assert busy == [(threading.get_ident(), (0, 1, 2))]
    finally:
        helper.lock.release()
    pid = os.fork()
    if pid == 0:  # the child: the parent's helper thread does not exist here; report through the exit code
        code = 1
        try:
            seen: list = []
            _chunks.run_chunks([0, 1], names(seen), True)
            code = 0 if len({i for i, _ in seen}) == 2 and _chunks._helper() is not helper else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:  # bounded: a child still running is killed
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if not done:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_an_interrupted_wait_leaves_no_answer_for_the_next_call(monkeypatch):
    """A caller interrupted (Ctrl-C) while it waits for the helper's half: the next call still waits for its own
    half, not the interrupted call's answer (each call has its own reply queue)."""
    import queue

    _chunks._helper()  # started before the patch: its job queue stays a plain one

    class Interrupted(queue.SimpleQueue):
        armed = [True]

        def get(self, *args, **kwargs):
            if Interrupted.armed[0]:
                Interrupted.armed[0] = False
                raise KeyboardInterrupt
            return super().get(*args, **kwargs)

    monkeypatch.setattr(queue, "SimpleQueue", Interrupted)
    done: list = []

    def slow(starts):
        if threading.current_thread().name == "hubkit-chunks":
            time.sleep(0.2)
        done.append(tuple(starts))

    with pytest.raises(KeyboardInterrupt):
        _chunks.run_chunks([0, 1], slow, True)
    done.clear()
    _chunks.run_chunks([2, 3], slow, True)
    assert sorted(done) == [(2,), (3,)] or sorted(done) == [(1,), (2,), (3,)]  # this call's halves are both done
