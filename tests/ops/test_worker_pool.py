"""The native worker pool (hubkit/ops/_worker_pool.py), run with the column-split dense chain as its job
(hubkit/ops/_chain_cols.py, whose outputs are checked bit for bit against a loop over the depth in NumPy).

Nothing here waits without a bound: pool calls return by construction (the caller steals a job the
worker has not claimed), and the forked child is polled with a deadline.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from hubkit.ops import _chain_cols, _worker_pool
from hubkit.ops._epilogue import RELU, RELU6
from tests.helpers_plans import depth_loop_reference
from tests.helpers_threads import from_threads, stolen_pool

pytestmark = pytest.mark.skipif(not _chain_cols.available(), reason="no worker pool here (needs x86-64 Linux, Numba)")


def _chain(rng, depth=784, cols=512, rows=1, act=RELU):
    """An input, a one-layer chain prepared for the column split, and its expected output."""
    x = rng.standard_normal((rows, depth)).astype(np.float32)
    w = rng.standard_normal((depth, cols)).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    call = _chain_cols.prepare([(_chain_cols.pack_cols(w), cols, b, act)])
    assert call is not None
    return x, call, depth_loop_reference(x, [(w, b, act)])


def _split(x, call, pool=None):
    """The chain on ``pool`` (the process's by default), or None when another caller holds it."""
    pool = pool or _worker_pool.get_pool()
    if not pool.acquire():
        return None
    try:
        return _chain_cols.run(x, call, pool)
    finally:
        pool.release()


def _wait_child(pid: int, seconds: float = 60.0) -> None:
    """Waits (bounded) for the forked child ``pid`` and checks that it exited 0; a child still running is killed."""
    deadline = time.monotonic() + seconds
    while True:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish within {seconds:.0f} s")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(code) == 0


def test_stolen_path_gives_the_same_bits_as_the_worker():
    rng = np.random.default_rng(1)
    x, call, want = _chain(rng)
    stolen = stolen_pool()
    a = _split(x, call, stolen)
    assert stolen.jobs == 0 and not stolen.started
    assert a.tobytes() == want.tobytes()
    for _ in range(50):
        assert _split(x, call).tobytes() == want.tobytes()


def test_worker_is_started_once_and_reused():
    pool = _worker_pool.get_pool()
    rng = np.random.default_rng(2)
    x, call, _ = _chain(rng)
    _split(x, call)
    assert pool.started
    tasks = len(os.listdir("/proc/self/task"))
    jobs = pool.jobs
    deadline = time.monotonic() + 20
    calls = 0
    while (pool.jobs < jobs + 5 or calls < 200) and time.monotonic() < deadline:
        _split(x, call)
        calls += 1
    assert pool.jobs >= jobs + 5  # the worker took jobs (even on a loaded machine, within 20 s)
    assert len(os.listdir("/proc/self/task")) <= tasks  # no thread per call
    assert _worker_pool.get_pool() is pool and pool.alive


def test_spin_for_sets_and_restores_and_a_shortened_spin_ends():
    import time

    pool = _worker_pool.get_pool()
    _worker_pool.handoff_us(0.0, calls=40)  # the worker started
    before = pool.spin_us
    with _worker_pool.spin_for(500_000.0):  # half a second after each job
        assert pool.spin_us == 500_000.0
        with _worker_pool.spin_for(0.0):
            assert pool.spin_us == 0.0
        assert pool.spin_us == 500_000.0
        _worker_pool.handoff_us(5.0, calls=20)  # jobs: the worker now spins half a second
        sleeps = pool.sleeps
        pool.set_spin(0.0)  # the spin under way ends at once, not in half a second
        deadline = time.monotonic() + 0.2
        while pool.sleeps == sleeps and time.monotonic() < deadline:
            time.sleep(0.002)
        assert pool.sleeps > sleeps
    assert pool.spin_us == before
    first, second = _worker_pool.spin_for(1000.0), _worker_pool.spin_for(2000.0)  # two threads' plans, overlapping
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to open closes first: the other's spin stays
    assert pool.spin_us == 2000.0
    second.__exit__(None, None, None)
    assert pool.spin_us == before


def test_empty_job_handoff():
    paired, alone, share = _worker_pool.handoff_us(0.0, calls=200)
    assert paired > 0 and alone > 0 and 0 <= share <= 1
    paired, alone, share = _worker_pool.handoff_us(5.0, calls=100)  # halves long enough for the worker to claim
    assert paired >= alone * 0.5


def test_a_pool_stops_within_its_bound():
    pool = _worker_pool.Pool()
    assert pool.acquire() and pool.started
    try:
        deadline = time.monotonic() + 5
        while not pool.alive and time.monotonic() < deadline:
            time.sleep(0.001)
        assert pool.alive
    finally:
        pool.release()
    assert pool.stop(timeout=5.0)
    assert not pool.alive
    # a stopped pool still computes (the caller steals every job)
    rng = np.random.default_rng(3)
    x, call, want = _chain(rng, 512, 512, act=RELU6)
    assert _split(x, call, pool).tobytes() == want.tobytes()


def test_a_busy_pool_refuses_a_second_caller():
    pool = _worker_pool.get_pool()
    assert pool.acquire()
    try:
        x, call, _ = _chain(np.random.default_rng(4), 512, 512)
        assert _split(x, call) is None  # the chain then runs np.dot on its own thread
    finally:
        pool.release()


def test_many_calls_from_four_threads():
    rng = np.random.default_rng(5)
    chains = [_chain(rng, rows=1 + i % 2) for i in range(4)]
    split = [0]

    def work(k):
        for i in range(200):
            x, call, want = chains[(k + i) % 4]
            got = _split(x, call)
            if got is not None:  # None: another thread had the pool
                split[0] += 1
                assert got.tobytes() == want.tobytes()

    from_threads(work)
    assert split[0] > 0


@pytest.mark.parametrize("worker_first", [True, False])
def test_forked_child_computes(worker_first):
    rng = np.random.default_rng(6)
    x, call, want = _chain(rng)
    if worker_first:
        assert _split(x, call) is not None  # the parent's worker runs
    pid = os.fork()
    if pid == 0:  # the child: no worker thread until it starts its own; exits with a status, never returns
        status = 1
        try:
            ok = True
            for _ in range(20):
                got = _split(x, call)
                ok = ok and got is not None and got.tobytes() == want.tobytes()
            pool = _worker_pool.get_pool()
            ok = ok and pool.started and pool.stop(timeout=5.0)
            status = 0 if ok else 2
        finally:
            os._exit(status)
    _wait_child(pid)


def test_l2_bytes_read_or_assumed(tmp_path, monkeypatch):
    from hubkit.ops import _gemm_kernel

    l2 = _gemm_kernel.l2_bytes()
    assert l2 is None or l2 >= 64 * 1024
    assert 64 * 1024 <= _gemm_kernel.nc_bytes() <= 512 * 1024
    for name, level, size in (("index0", "1", "48K"), ("index1", "1", "32K"), ("index2", "2", "1280K")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(level + "\n")
        (tmp_path / name / "size").write_text(size + "\n")
    assert _gemm_kernel.l2_bytes(str(tmp_path)) == 1280 * 1024
    (tmp_path / "index2" / "size").write_text("2m\n")
    assert _gemm_kernel.l2_bytes(str(tmp_path)) == 2 * 1024 * 1024
    (tmp_path / "index2" / "size").write_text("lots\n")  # unreadable: not guessed
    assert _gemm_kernel.l2_bytes(str(tmp_path)) is None
    (tmp_path / "index2" / "size").write_text("\u00b2K\n")  # a digit to isdigit() that int() refuses
    assert _gemm_kernel.l2_bytes(str(tmp_path)) is None
    (tmp_path / "index2" / "size").write_bytes(b"\xff\xfeK\n")  # not text
    assert _gemm_kernel.l2_bytes(str(tmp_path)) is None
    assert _gemm_kernel.l2_bytes(str(tmp_path / "missing")) is None
    for l2, nc in ((None, 512), (512 * 1024, 256), (1280 * 1024, 512), (96 * 1024, 64)):
        monkeypatch.setattr(_gemm_kernel, "l2_bytes", lambda l2=l2: l2)
        assert _gemm_kernel.nc_bytes() == nc * 1024


def test_one_cpu_means_no_worker():
    rng = np.random.default_rng(10)
    x, call, want = _chain(rng)
    pid = os.fork()
    if pid == 0:  # the child, on one CPU: the pool never starts a worker; the caller runs every chunk
        status = 1
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
            got = _split(x, call)
            pool = _worker_pool.get_pool()
            ok = got is not None and got.tobytes() == want.tobytes() and not pool.started
            status = 0 if ok else 2
        finally:
            os._exit(status)
    _wait_child(pid)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: no worker")
def test_worker_kept_off_the_starting_callers_cpu():
    pool = _worker_pool.Pool()
    assert pool.acquire() and pool.started
    try:
        deadline = time.monotonic() + 5
        while not pool.alive and time.monotonic() < deadline:
            time.sleep(0.001)
        allowed = {}
        for t in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{t}/status") as f:
                allowed[t] = next(line.split()[1] for line in f if line.startswith("Cpus_allowed_list"))
        assert len(set(allowed.values())) >= 2  # at least one thread (a worker) has fewer CPUs than the process
    finally:
        pool.release()
        assert pool.stop(timeout=5.0)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: no worker")
def test_a_plan_caller_is_kept_off_the_workers_cpus_and_gets_its_own_back():
    """Inside ``caller_off_worker`` the calling thread runs only where the worker does not; a second thread is left
    alone meanwhile; ``caller_anywhere`` (a chunked kernel starting a thread) lifts it for its block; and the thread's
    own CPU set comes back at the end, after an error too."""
    from hubkit.ops import _chunks

    pool = _worker_pool.get_pool()
    assert pool.acquire()
    pool.release()
    if not pool.worker_cpus:
        pytest.skip("the worker could not be kept off a CPU here")
    mine = os.sched_getaffinity(0)
    seen: dict[str, set[int]] = {}

    def other():
        os.sched_setaffinity(0, mine)  # it inherited the kept-off set of the thread that started it
        with _worker_pool.caller_off_worker():
            seen["other"] = os.sched_getaffinity(0)

    with pytest.raises(KeyError), _worker_pool.caller_off_worker():
        inside = os.sched_getaffinity(0)
        assert inside == mine - pool.worker_cpus and inside
        assert _worker_pool.own_cpus() == mine
        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        with _worker_pool.caller_anywhere():
            seen["anywhere"] = os.sched_getaffinity(0)
            _chunks.run_chunks([0, 1], lambda starts: seen.setdefault(threading.current_thread().name,
                                                                     os.sched_getaffinity(0)), True)
        seen["after"] = os.sched_getaffinity(0)
        raise KeyError("an error inside the plan")
    assert os.sched_getaffinity(0) == mine
    assert seen["other"] == mine  # one thread at a time is kept off
    assert seen["anywhere"] == mine and seen["hubkit-chunks"] == mine
    assert seen["after"] == mine - pool.worker_cpus


def test_a_job_compiles_once_and_a_failure_is_remembered(monkeypatch):
    from hubkit.ops import _numba

    calls = []

    def job(args):  # pragma: no cover - compiled
        pass

    def broken(args):  # pragma: no cover - does not compile: a Python object in nopython mode
        calls.append(args)

    addr = _numba.job(job)
    assert addr and _numba.job(job) == addr
    assert _numba.job(broken) == 0 and _numba.job(broken) == 0 and _numba._STATE.jobs[broken] == (0, None)
    monkeypatch.setattr(_numba._STATE, "enabled", False)
    assert _numba.job(job) == 0  # Numba off: no job


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: no worker")
def test_a_caller_that_slept_says_so_and_is_moved_off_the_workers_cpus(monkeypatch):
    """``hk_pool_run`` returns 3 when the caller slept in a futex wait for the worker (1 when it only spun); the pool
    then moves a caller found on the worker's CPUs off them, and leaves its CPU set as it was."""
    import ctypes

    pool = _worker_pool.get_pool()
    assert pool.acquire()
    try:
        code = _worker_pool.compile_code()
        ticks = code.ticks_per_us
        slow = (ctypes.c_int64 * 1)(int(30_000 * ticks))  # the worker's half: 30 ms
        short = (ctypes.c_int64 * 1)(int(3_000 * ticks))  # the caller's: 3 ms, time for the worker to claim its half
        run = _worker_pool._runner()
        seen = set()
        deadline = time.monotonic() + 10
        for _ in range(20):  # bounded: a worker that missed its half lets the caller steal it (0)
            seen.add(run(pool.ctl, code.busy, ctypes.addressof(slow), ctypes.addressof(short), 0))
            if 3 in seen or time.monotonic() > deadline:
                break
        assert 3 in seen
        assert run(pool.ctl, code.busy, ctypes.addressof(short), ctypes.addressof(slow), pool.caller_spin) in (0, 1)
    finally:
        pool.release()
    calls = []
    mine = os.sched_getaffinity(0)
    worker = frozenset({min(mine)})

    class Libc:
        cpu = min(mine)

        def sched_getcpu(self):
            return self.cpu

    libc = Libc()
    monkeypatch.setattr(_worker_pool, "_libc", lambda: libc)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(set(cpus)))
    _worker_pool._move_off(worker)
    assert calls == [mine - worker, mine]
    libc.cpu = max(mine)  # not on the worker's CPUs: nothing to do
    _worker_pool._move_off(worker)
    assert len(calls) == 2


def test_a_caller_with_more_than_two_cpus_is_not_tied_to_one(monkeypatch):
    """Kept off the worker's CPUs (all but one), a thread with three or more would have one left: it is not pinned
    (a caller moved onto the worker's CPU is moved off by Pool.run instead)."""
    pool = _worker_pool.get_pool()
    monkeypatch.setattr(pool, "worker_cpus", frozenset({1, 2}))
    monkeypatch.setattr(_worker_pool._HOLDER, "pid", os.getpid())
    monkeypatch.setattr(_worker_pool._HOLDER, "pool", pool)
    calls = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(set(cpus)))
    with _worker_pool.caller_off_worker():
        pass
    assert calls == []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with _worker_pool.caller_off_worker():
        assert calls == [{0}]
    assert calls == [{0}, {0, 1}]


_MXCSR_IR = r"""
declare void @llvm.x86.sse.ldmxcsr(ptr)
declare void @llvm.x86.sse.stmxcsr(ptr)
declare i64 @llvm.readcyclecounter()
; stores the control word at arg[0], then spins arg[1] time-stamp ticks (time for the worker to claim its half)
define void @hk_test_store_mxcsr(ptr %arg) {
entry:
  call void @llvm.x86.sse.stmxcsr(ptr %arg)
  %np = getelementptr i64, ptr %arg, i64 1
  %n = load i64, ptr %np, align 8
  %t0 = call i64 @llvm.readcyclecounter()
  br label %spin
spin:
  %t = call i64 @llvm.readcyclecounter()
  %d = sub i64 %t, %t0
  %more = icmp slt i64 %d, %n
  br i1 %more, label %spin, label %out
out:
  ret void
}
define i32 @hk_test_set_mxcsr(i32 %v) {
  %p = alloca i32, align 4
  call void @llvm.x86.sse.stmxcsr(ptr %p)
  %old = load i32, ptr %p, align 4
  store i32 %v, ptr %p, align 4
  call void @llvm.x86.sse.ldmxcsr(ptr %p)
  ret i32 %old
}
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: no worker")
def test_a_job_runs_with_the_callers_floating_point_control():
    """A caller that set flush-to-zero and denormals-are-zero (after the worker started) gets them in the worker's
    half too, and the worker's own control word is back after the job."""
    import ctypes

    engine = _worker_pool.compile_ir(_MXCSR_IR)
    store = engine.get_function_address("hk_test_store_mxcsr")
    set_mxcsr = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int32)(engine.get_function_address("hk_test_set_mxcsr"))
    pool = _worker_pool.get_pool()
    ticks = int(20 * _worker_pool.compile_code().ticks_per_us)
    worker_seen, caller_seen = (ctypes.c_int64 * 2)(0, ticks), (ctypes.c_int64 * 2)(0, ticks)

    def run_until_the_worker_runs() -> None:
        assert pool.acquire()
        try:
            for _ in range(200):  # bounded: a job the worker missed is run here (then try again)
                if pool.run(store, ctypes.addressof(worker_seen), ctypes.addressof(caller_seen)):
                    return
            pytest.skip("the worker never claimed a job in 200 tries")
        finally:
            pool.release()

    run_until_the_worker_runs()  # the worker started, with this thread's control word
    default = (caller_seen[0] & 0xFFFFFFFF)
    ftz_daz = default | 0x8040
    old = set_mxcsr(ftz_daz)
    try:
        run_until_the_worker_runs()
        assert (caller_seen[0] & 0xFFFFFFFF) == ftz_daz and (worker_seen[0] & 0xFFFFFFFF) == ftz_daz
    finally:
        set_mxcsr(old)
    run_until_the_worker_runs()
    assert (worker_seen[0] & 0xFFFFFFFF) == default  # the worker's own came back after the job
