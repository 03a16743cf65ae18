"""One native worker thread that runs half of a job beside the calling thread (x86-64 Linux).

At one row a dense layer is a matrix-vector product of 10-40 us, too short for a Python thread
(a hand-off round trip of 16 us, measured by an earlier session) and for Numba's OpenMP workers
(which spin and take the core from the next call's BLAS threads). This module owns a thread of its
own: its loop and the hand-off are LLVM IR compiled here by llvmlite, the thread is started by
libc's ``pthread_create`` with the compiled loop's address, and it never touches Python.

The hand-off, through a control block of 32-bit words on separate cache lines (``_OFF_*``):

- the caller stores the job (a function address and its argument block's address) and its own MXCSR (the
  SSE rounding mode and the flush-to-zero and denormals-are-zero bits: the worker runs the job with them and
  restores its own after, so a half computes the same bits on either thread), clears ``done`` and stores
  ``state = POSTED``; when the worker says it sleeps, a ``futex`` wake follows;
- the caller runs its own half, then tries to claim the posted job itself (compare-and-swap
  ``POSTED -> STOLEN``): if it wins, it runs the job (slower, but correct); if it loses, the worker
  claimed it (``POSTED -> TAKEN``) and the caller waits for ``done`` (a bounded spin, then futex
  waits of 1 ms each; ``hk_pool_run`` then returns 3, not 1, and a caller the wake-up put on the
  worker's CPU is moved off it, :func:`_move_off`). The worker only ever claims a job it then runs to its end, so a missing,
  slow, late-woken or never-started worker (a forked child has none) only costs time: nothing can
  wait for a job nobody runs;
- the worker spins up to :data:`SPIN_US` after each job or wake-up (bounded by the time-stamp
  counter, not by a count of ``pause`` instructions, whose latency varies by CPU model and which a
  KVM guest's pause-loop exiting may turn into a yield of the virtual CPU), then
  sleeps in a futex wait on ``state`` (1 s timeout); the sleep and the post use the store-then-load
  pattern on ``sleeping`` / ``state`` (both sequentially consistent), so a wake is lost only if the
  futex call fails, which again costs only time (the caller steals).

Lifetime: the control block is allocated with ``malloc`` and never freed, the compiled code's
engine is kept for the process, and at exit (``atexit``) the worker is told to quit and waited for
(bounded): nothing the thread can touch is ever freed under it. A job's argument block and the
arrays it points to belong to the caller, which returns only when the job is done (by either
thread). One control block serves one caller at a time (:func:`acquire` is a non-blocking lock: a
concurrent caller runs single-threaded). After ``fork`` the child gets a fresh pool (the parent's
worker does not exist there) and starts its own worker on first use.

Measured (:func:`handoff_us`, 2-core KVM guest, quiet): an empty job's round trip through ctypes
0.91 us, 0.69 us above a ctypes call of an empty function (the caller mostly steals an empty job);
with halves of 2, 5 and 10 us, a paired call took 1.0-1.1 us more than one half alone and the
worker ran 94-99% of the halves.

The worker is kept off the CPU of the caller that started it (:func:`_keep_off`), and it spins
:data:`SPIN_US` after a job, :data:`WAKE_SPIN_US` after a wake-up. Measured on the MLP chain at one row
in samples of 200 calls after a 50 ms pause (as ``scripts/bench_vs_ort.py`` samples): unpinned, the
worker woken by the caller landed on the caller's CPU and whole samples ran at 2-3x the time (9-14
of 16 samples with a 50 us spin); pinned, 1-3 of 16 with a 50 us spin, 4-8 of 16 with 20 us (the
worker's core, woken from idle, was late, and a short spin let it fall asleep again between calls).
The cost of the longer spin: a batch-64 call (2 BLAS threads) right after a batch-1 call took
1.06-1.08x its time without the split (1.03x with a 20 us spin).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from hubkit.ops._forksafe import ForkSafeLock

__all__ = [
    "SPIN_US",
    "WAKE_SPIN_US",
    "Pool",
    "available",
    "get_pool",
    "handoff_us",
]

IDLE, POSTED, TAKEN, STOLEN = 0, 1, 2, 3

_OFF_STATE = 0  # i32 job state
_OFF_DONE = 64  # i32 1 when the worker finished the job it took
_OFF_SLEEPING = 128  # i32 1 while the worker is in (or about to enter) its futex wait
_OFF_QUIT = 132  # i32 1: the worker returns
_OFF_ALIVE = 136  # i32 1 while the worker's loop runs
_OFF_WAITING = 192  # i32 1 while the caller is in a futex wait on done
_OFF_FN = 256  # i64 the job's function address
_OFF_ARG = 264  # i64 its argument block's address
_OFF_SYSCALL = 272  # i64 libc's syscall()
_OFF_SPIN = 280  # i64 time-stamp-counter ticks the worker spins before it sleeps
_OFF_JOBS = 288  # i64 jobs the worker ran (a statistic)
_OFF_SLEEPS = 296  # i64 futex waits of the worker (a statistic)
_OFF_CALLER_WAITS = 304  # i64 futex waits of callers for done (a statistic)
_OFF_WAKE_SPIN = 312  # i64 time-stamp-counter ticks the worker spins after a wake-up
_OFF_MXCSR = 320  # i32 the posting caller's MXCSR (rounding, flush-to-zero, denormals-are-zero), for the job
_CTL_BYTES = 384

SPIN_US = 50.0
"""Microseconds the worker spins after a job before it sleeps (see the module docstring)."""

WAKE_SPIN_US = 200.0
"""Microseconds the worker spins after a wake-up (it was woken for a job it may have missed: the
caller steals what the worker has not claimed, and the next job follows within a call)."""

_CALLER_SPIN_US = 50.0
"""Microseconds the caller spins waiting for ``done`` before it sleeps in 1 ms futex waits (a worker
that took longer was descheduled: sleeping gives the core back, in case both share one)."""

_SYS_FUTEX = 202  # x86-64
_FUTEX_WAIT_PRIVATE = 128
_FUTEX_WAKE_PRIVATE = 129

_IR = r"""
declare i64 @llvm.readcyclecounter()
declare void @llvm.x86.sse.stmxcsr(ptr)
declare void @llvm.x86.sse.ldmxcsr(ptr)

define i64 @hk_pool_tsc() {
  %t = call i64 @llvm.readcyclecounter()
  ret i64 %t
}

define internal i32 @ld(ptr %p) {
  %v = load atomic i32, ptr %p seq_cst, align 4
  ret i32 %v
}

define internal void @st(ptr %p, i32 %v) {
  store atomic i32 %v, ptr %p seq_cst, align 4
  ret void
}

define internal i64 @futex(ptr %ctl, ptr %word, i64 %op, i64 %val, i64 %sec, i64 %nsec) {
  %ts = alloca [2 x i64], align 8
  %ts1 = getelementptr i64, ptr %ts, i64 1
  store i64 %sec, ptr %ts, align 8
  store i64 %nsec, ptr %ts1, align 8
  %scp = getelementptr i8, ptr %ctl, i64 272
  %sci = load i64, ptr %scp, align 8
  %sc = inttoptr i64 %sci to ptr
  %r = call i64 (i64, ...) %sc(i64 202, ptr %word, i64 %op, i64 %val, ptr %ts)
  ret i64 %r
}

define ptr @hk_pool_worker(ptr %ctl) {
entry:
  %state = getelementptr i8, ptr %ctl, i64 0
  %done = getelementptr i8, ptr %ctl, i64 64
  %sleeping = getelementptr i8, ptr %ctl, i64 128
  %quit = getelementptr i8, ptr %ctl, i64 132
  %alive = getelementptr i8, ptr %ctl, i64 136
  %waiting = getelementptr i8, ptr %ctl, i64 192
  %fnp = getelementptr i8, ptr %ctl, i64 256
  %argp = getelementptr i8, ptr %ctl, i64 264
  %spinp = getelementptr i8, ptr %ctl, i64 280
  %jobsp = getelementptr i8, ptr %ctl, i64 288
  %mxp = getelementptr i8, ptr %ctl, i64 320
  %mxown = alloca i32, align 4  ; in the entry block: one slot for the thread's life, not one per job
  call void @st(ptr %alive, i32 1)
  br label %outer.wake
outer:
  %limit.job = load atomic i64, ptr %spinp monotonic, align 8
  br label %spin.start
outer.wake:
  %wakespinp = getelementptr i8, ptr %ctl, i64 312
  %limit.wake = load atomic i64, ptr %wakespinp monotonic, align 8
  br label %spin.start
spin.start:
  %limit = phi i64 [%limit.job, %outer], [%limit.wake, %outer.wake]
  %limitp = phi ptr [%spinp, %outer], [%wakespinp, %outer.wake]
  %t0 = call i64 @llvm.readcyclecounter()
  %end = add i64 %t0, %limit
  br label %spin
spin:
  %s = call i32 @ld(ptr %state)
  %posted = icmp eq i32 %s, 1
  br i1 %posted, label %claim, label %spin.quit
spin.quit:
  %q = call i32 @ld(ptr %quit)
  %qset = icmp ne i32 %q, 0
  br i1 %qset, label %exit, label %spin.next
spin.next:
  %now = call i64 @llvm.readcyclecounter()
  %more = icmp slt i64 %now, %end
  ; a spin shortened meanwhile (set_spin) ends now: its limit (the job's or the wake-up's) is read again each round
  %lim.now = load atomic i64, ptr %limitp monotonic, align 8
  %end.now = add i64 %t0, %lim.now
  %more.now = icmp slt i64 %now, %end.now
  %more2 = and i1 %more, %more.now
  br i1 %more2, label %spin, label %sleep
sleep:
  call void @st(ptr %sleeping, i32 1)
  %s2 = call i32 @ld(ptr %state)
  %q2 = call i32 @ld(ptr %quit)
  %p2 = icmp eq i32 %s2, 1
  %qq2 = icmp ne i32 %q2, 0
  %wake2 = or i1 %p2, %qq2
  br i1 %wake2, label %awake, label %wait
wait:
  %sleepsp = getelementptr i8, ptr %ctl, i64 296
  %sleeps = load i64, ptr %sleepsp, align 8
  %sleeps1 = add i64 %sleeps, 1
  store i64 %sleeps1, ptr %sleepsp, align 8
  %s2w = zext i32 %s2 to i64
  %r = call i64 @futex(ptr %ctl, ptr %state, i64 128, i64 %s2w, i64 1, i64 0)
  br label %awake
awake:
  call void @st(ptr %sleeping, i32 0)
  br label %outer.wake
claim:
  %cx = cmpxchg ptr %state, i32 1, i32 2 seq_cst seq_cst
  %won = extractvalue { i32, i1 } %cx, 1
  br i1 %won, label %run, label %outer
run:
  %fni = load i64, ptr %fnp, align 8
  %argi = load i64, ptr %argp, align 8
  %fn = inttoptr i64 %fni to ptr
  %arg = inttoptr i64 %argi to ptr
  ; the job runs with the caller's floating-point control (a caller that set flush-to-zero gets its bits
  ; whichever thread runs a half), and the worker's own is restored after
  call void @llvm.x86.sse.stmxcsr(ptr %mxown)
  call void @llvm.x86.sse.ldmxcsr(ptr %mxp)
  call void %fn(ptr %arg)
  call void @llvm.x86.sse.ldmxcsr(ptr %mxown)
  %jobs = load i64, ptr %jobsp, align 8
  %jobs1 = add i64 %jobs, 1
  store i64 %jobs1, ptr %jobsp, align 8
  call void @st(ptr %done, i32 1)
  %w = call i32 @ld(ptr %waiting)
  %wset = icmp ne i32 %w, 0
  br i1 %wset, label %wakecaller, label %outer
wakecaller:
  %r2 = call i64 @futex(ptr %ctl, ptr %done, i64 129, i64 1, i64 0, i64 0)
  br label %outer
exit:
  call void @st(ptr %alive, i32 0)
  ret ptr null
}

; Runs fn(argw) on the worker (or here, if the worker does not claim it) and fn(argm) here.
; Returns 1 when the worker ran fn(argw), 0 when this thread did.
define i64 @hk_pool_run(ptr %ctl, i64 %fni, i64 %argw, i64 %argm, i64 %spinmax) {
entry:
  %state = getelementptr i8, ptr %ctl, i64 0
  %done = getelementptr i8, ptr %ctl, i64 64
  %sleeping = getelementptr i8, ptr %ctl, i64 128
  %waiting = getelementptr i8, ptr %ctl, i64 192
  %fnp = getelementptr i8, ptr %ctl, i64 256
  %argp = getelementptr i8, ptr %ctl, i64 264
  store i64 %fni, ptr %fnp, align 8
  store i64 %argw, ptr %argp, align 8
  %mxp = getelementptr i8, ptr %ctl, i64 320
  call void @llvm.x86.sse.stmxcsr(ptr %mxp)
  call void @st(ptr %done, i32 0)
  call void @st(ptr %state, i32 1)
  %sl = call i32 @ld(ptr %sleeping)
  %slset = icmp ne i32 %sl, 0
  br i1 %slset, label %wake, label %own
wake:
  %r0 = call i64 @futex(ptr %ctl, ptr %state, i64 129, i64 1, i64 0, i64 0)
  br label %own
own:
  %fn = inttoptr i64 %fni to ptr
  %pm = inttoptr i64 %argm to ptr
  call void %fn(ptr %pm)
  %cx = cmpxchg ptr %state, i32 1, i32 3 seq_cst seq_cst
  %stolen = extractvalue { i32, i1 } %cx, 1
  br i1 %stolen, label %steal, label %spin.start
steal:
  %pw = inttoptr i64 %argw to ptr
  call void %fn(ptr %pw)
  call void @st(ptr %state, i32 0)
  ret i64 0
spin.start:
  %c0 = call i64 @llvm.readcyclecounter()
  %cend = add i64 %c0, %spinmax
  br label %spin
spin:
  %d = call i32 @ld(ptr %done)
  %dset = icmp ne i32 %d, 0
  br i1 %dset, label %finish, label %spin.more
spin.more:
  %cnow = call i64 @llvm.readcyclecounter()
  %more = icmp slt i64 %cnow, %cend
  br i1 %more, label %spin, label %sleep
sleep:
  call void @st(ptr %waiting, i32 1)
  %d2 = call i32 @ld(ptr %done)
  %d2set = icmp ne i32 %d2, 0
  br i1 %d2set, label %woken, label %wait
wait:
  %cwp = getelementptr i8, ptr %ctl, i64 304
  %cw = load i64, ptr %cwp, align 8
  %cw1 = add i64 %cw, 1
  store i64 %cw1, ptr %cwp, align 8
  %r1 = call i64 @futex(ptr %ctl, ptr %done, i64 128, i64 0, i64 0, i64 1000000)
  br label %woken
woken:
  call void @st(ptr %waiting, i32 0)
  %d3 = call i32 @ld(ptr %done)
  %d3set = icmp ne i32 %d3, 0
  br i1 %d3set, label %finish, label %sleep
finish:
  %ran = phi i64 [1, %spin], [3, %woken]
  call void @st(ptr %state, i32 0)
  ret i64 %ran
}

define void @hk_pool_empty(ptr %arg) {
  ret void
}

; spins for *arg cycles of the time-stamp counter (a job of a known length, to measure the hand-off)
define void @hk_pool_busy(ptr %arg) {
entry:
  %n = load i64, ptr %arg, align 8
  %t0 = call i64 @llvm.readcyclecounter()
  %end = add i64 %t0, %n
  br label %loop
loop:
  %t = call i64 @llvm.readcyclecounter()
  %more = icmp slt i64 %t, %end
  br i1 %more, label %loop, label %out
out:
  ret void
}
"""


@functools.cache
def available() -> bool:
    """Whether the pool can run here: x86-64 Linux with llvmlite and libc's ``pthread_create`` (decided once: it is
    asked on every split call)."""
    if sys.platform != "linux" or os.uname().machine.lower() not in ("x86_64", "amd64"):
        return False
    try:
        import llvmlite.binding  # noqa: F401
    except Exception:  # no llvmlite: no pool
        return False
    return True


class _Code:
    """The compiled loop and hand-off (one engine per process, never freed)."""

    engine: Any = None
    worker: int = 0
    run: int = 0
    empty: int = 0
    busy: int = 0
    ticks_per_us: float = 0.0
    runner: Any = None  # hk_pool_run as a ctypes function


_CODE = _Code()
_code_lock = ForkSafeLock()  # fresh in a forked child
_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.pthread_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        libc.pthread_create.restype = ctypes.c_int
        libc.pthread_detach.argtypes = [ctypes.c_ulong]
        libc.pthread_detach.restype = ctypes.c_int
        libc.pthread_setaffinity_np.argtypes = [ctypes.c_ulong, ctypes.c_size_t, ctypes.c_void_p]
        libc.pthread_setaffinity_np.restype = ctypes.c_int
        libc.sched_getcpu.restype = ctypes.c_int
        _LIBC = libc
    return _LIBC


def compile_code() -> _Code:
    """The compiled loop and hand-off (compiled on the first call, kept for the process)."""
    if not _CODE.run:
        with _code_lock:
            if not _CODE.run:
                engine = compile_ir(_IR)
                _CODE.worker = engine.get_function_address("hk_pool_worker")
                _CODE.empty = engine.get_function_address("hk_pool_empty")
                _CODE.busy = engine.get_function_address("hk_pool_busy")
                _CODE.engine = engine  # kept for the process: the worker runs this code
                _CODE.ticks_per_us = _calibrate(engine.get_function_address("hk_pool_tsc"))
                _CODE.run = engine.get_function_address("hk_pool_run")
    return _CODE


def _calibrate(tsc_addr: int) -> float:
    """Time-stamp-counter ticks per microsecond (the spins are bounded in ticks)."""
    tsc = ctypes.CFUNCTYPE(ctypes.c_int64)(tsc_addr)
    t0, c0 = time.perf_counter(), tsc()
    while time.perf_counter() - t0 < 0.002:
        pass
    t1, c1 = time.perf_counter(), tsc()
    return max(1.0, (c1 - c0) / ((t1 - t0) * 1e6))


_ENGINES: list[Any] = []  # every engine compiled here: never freed (a worker may run their code)


def compile_ir(ir: str) -> Any:
    """An llvmlite MCJIT engine for the IR text ``ir``, compiled for the host and kept for the process."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(ir)
    mod.verify()
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2, codemodel="jitdefault"
    )
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    _ENGINES.append(engine)
    # one reference more than anything holds: the engine (and the machine code a worker may still be
    # running while the interpreter shuts down) is never freed
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(engine))
    return engine


class Pool:
    """A control block and (once started) its worker thread; one caller at a time (:meth:`acquire`)."""

    def __init__(self) -> None:
        libc = _libc()
        addr = libc.malloc(_CTL_BYTES + 64)  # never freed: the worker may read it until the process ends
        if not addr:
            raise MemoryError("malloc of the worker pool's control block failed")
        self.ctl = (addr + 63) & ~63
        ctypes.memset(self.ctl, 0, _CTL_BYTES)
        syscall = ctypes.cast(libc.syscall, ctypes.c_void_p).value or 0
        ctypes.c_int64.from_address(self.ctl + _OFF_SYSCALL).value = syscall
        self.ticks_per_us = compile_code().ticks_per_us
        self.set_spin(SPIN_US, WAKE_SPIN_US)
        self.lock = threading.Lock()
        self.started = False
        self.enabled = True  # tests turn the worker off to run the stolen path
        self.caller_spin = int(_CALLER_SPIN_US * self.ticks_per_us)
        self.worker_cpus: frozenset[int] = frozenset()  # where the worker may run (empty: anywhere)

    def _word(self, off: int) -> int:
        return ctypes.c_int32.from_address(self.ctl + off).value

    @property
    def alive(self) -> bool:
        """Whether the worker's loop runs (it sets the word when it starts and clears it when it quits)."""
        return self._word(_OFF_ALIVE) == 1

    @property
    def jobs(self) -> int:
        """Jobs the worker has run."""
        return ctypes.c_int64.from_address(self.ctl + _OFF_JOBS).value

    @property
    def sleeps(self) -> int:
        """Futex waits of the worker (each one a sleep after its spin ran out)."""
        return ctypes.c_int64.from_address(self.ctl + _OFF_SLEEPS).value

    @property
    def caller_waits(self) -> int:
        """Futex waits of callers for a job the worker had claimed but not finished within the caller's spin."""
        return ctypes.c_int64.from_address(self.ctl + _OFF_CALLER_WAITS).value

    def set_spin(self, us: float, wake_us: float | None = None) -> None:
        """Microseconds the worker spins after a job (and after a wake-up, when given) before it sleeps; a spin
        under way ends when it has lasted the new job spin."""
        self.spin_us = us
        ctypes.c_int64.from_address(self.ctl + _OFF_SPIN).value = max(0, int(us * self.ticks_per_us))
        if wake_us is not None:
            ctypes.c_int64.from_address(self.ctl + _OFF_WAKE_SPIN).value = max(0, int(wake_us * self.ticks_per_us))

    def start(self) -> bool:
        """Starts the worker thread (once; called with :attr:`lock` held). False if it could not start."""
        if self.started:
            return True
        cpus = os.sched_getaffinity(0)
        if len(cpus) < 2:
            self.enabled = False  # one CPU: a worker could only take it from the caller
            return False
        code = compile_code()
        libc = _libc()
        tid = ctypes.c_ulong(0)
        rc = libc.pthread_create(ctypes.byref(tid), None, code.worker, self.ctl)
        if rc != 0:
            self.enabled = False  # no thread: every job runs on the caller
            return False
        self.worker_cpus = _keep_off(libc, tid.value, cpus, libc.sched_getcpu())
        libc.pthread_detach(tid.value)
        self.started = True
        return True

    def acquire(self) -> bool:
        """Takes the pool for one call (False: another thread has it; run single-threaded)."""
        if not self.lock.acquire(blocking=False):
            return False
        if not self.started and self.enabled:
            self.start()
        return True

    def release(self) -> None:
        """Gives the pool back."""
        self.lock.release()

    def run(self, fn: int, arg_worker: int, arg_caller: int) -> bool:
        """``fn(arg_worker)`` on the worker (or here) and ``fn(arg_caller)`` here; True if the worker ran it.

        Call with the pool acquired; ``fn`` is the address of a native ``void fn(void *)``. A caller that slept
        waiting for the worker is moved off the worker's CPUs if it woke up on one (:func:`_move_off`).
        """
        spin = self.caller_spin if self.enabled and self.started else 0
        ran = _runner()(self.ctl, fn, arg_worker, arg_caller, spin)
        if ran == 3 and self.worker_cpus:  # the caller slept in a futex wait: the worker's wake-up may have moved it
            _move_off(self.worker_cpus)
        return bool(ran)

    def stop(self, timeout: float = 0.5) -> bool:
        """Tells the worker to quit and waits for it (bounded); True when it has quit or never started."""
        if not self.started:
            return True
        ctypes.c_int32.from_address(self.ctl + _OFF_QUIT).value = 1
        libc = _libc()
        libc.syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(self.ctl + _OFF_STATE),
                     ctypes.c_long(_FUTEX_WAKE_PRIVATE), ctypes.c_long(1), None)
        end = time.monotonic() + timeout
        while self.alive and time.monotonic() < end:
            time.sleep(0.0005)
        return not self.alive


def run_halves(fn: int, addr: int, stride: int) -> bool:
    """``fn(addr + stride)`` on the worker (or here) and ``fn(addr)`` here: the two halves of a job whose argument
    blocks lie ``stride`` bytes apart (the caller keeps them alive; both halves are done when this returns). False,
    nothing run, when another caller holds the pool."""
    pool = get_pool()
    if not pool.acquire():
        return False
    try:
        pool.run(fn, addr + stride, addr)
        return True
    finally:
        pool.release()


def _move_off(cpus: frozenset[int]) -> None:
    """Moves the calling thread off ``cpus`` when it runs on one of them (and leaves its CPU set as it was).

    A caller that slept in a futex wait for the worker was woken by the worker, and the scheduler's wake-affine
    placement could put it on the worker's CPU; both then shared one core until the load balancer moved one,
    often for the rest of the call (SqueezeNet at one image, two threads: 12-24 ms calls against 7)."""
    if _libc().sched_getcpu() not in cpus:
        return
    try:
        mine = os.sched_getaffinity(0)
        if mine - cpus:
            os.sched_setaffinity(0, mine - cpus)  # the scheduler moves it at once
            os.sched_setaffinity(0, mine)  # and leaves it there
    except OSError:  # refused: only costs time
        pass


def _keep_off(libc: Any, tid: int, cpus: set[int], here: int) -> frozenset[int]:
    """Restricts the worker ``tid`` to ``cpus`` but the CPU ``here`` (the starting caller's); returns the CPUs
    it is kept on (empty when it was not restricted).

    Unrestricted, the scheduler's wake-affine placement put the worker woken by a futex wake on the
    waker's CPU: both threads then shared one core (the other idle) for whole runs of calls
    (measured: 150 us per MLP call instead of 45, the worker sleeping after every job). The caller
    is not pinned: when it lands on the worker's CPU, the load balancer moves it to an idle one
    (inside a channels-last plan it is kept off, :func:`caller_off_worker`).
    """
    others = sorted(c for c in cpus - {here} if c < 1024)
    if here < 0 or not others:
        return frozenset()
    mask = (ctypes.c_uint64 * 16)()  # a cpu_set_t of 1024 CPUs
    for cpu in others:
        mask[cpu // 64] |= 1 << (cpu % 64)
    if libc.pthread_setaffinity_np(tid, ctypes.sizeof(mask), ctypes.byref(mask)) != 0:
        return frozenset()  # a failure only costs time
    return frozenset(others)


class _Holder:
    pool: Pool | None = None
    pid: int = 0
    hooked: bool = False


_HOLDER = _Holder()
_holder_lock = threading.Lock()


def get_pool() -> Pool:
    """The process's pool (made on first use; a fresh one in a forked child, see :func:`_after_fork_in_child`)."""
    pool = _HOLDER.pool
    if pool is None:
        with _holder_lock:
            pool = _HOLDER.pool
            if pool is None or _HOLDER.pid != os.getpid():
                if not _HOLDER.hooked:
                    os.register_at_fork(after_in_child=_after_fork_in_child)
                    atexit.register(_at_exit)
                    _HOLDER.hooked = True
                pool = Pool()
                _HOLDER.pool, _HOLDER.pid = pool, os.getpid()
    return pool


class _Spins:
    lock = ForkSafeLock()  # fresh in a forked child
    active: list[list[float]] = []  # one entry per block inside spin_for, innermost or latest last
    base = SPIN_US  # the pool's spin before the first of them


@contextlib.contextmanager
def spin_for(us: float) -> Iterator[None]:
    """The worker's job spin at ``us`` microseconds inside the block (nothing when no pool was made). A channels-last
    plan's split layers come every few hundred microseconds: a worker that slept between them was woken late for
    each (``hubkit.runtime.executor.Plan.run_steps``); code running a thread of its own on the worker's core asks
    for 0 (:mod:`hubkit.ops._chunks`). Blocks may nest or overlap from several threads: the latest block still open
    decides, and when the last one closes the spin before the first comes back."""
    pool = _HOLDER.pool
    if pool is None or _HOLDER.pid != os.getpid():
        yield
        return
    entry = [us]
    with _Spins.lock:
        if not _Spins.active:
            _Spins.base = pool.spin_us
        _Spins.active.append(entry)
        pool.set_spin(us)
    try:
        yield
    finally:
        with _Spins.lock:
            _Spins.active = [e for e in _Spins.active if e is not entry]
            pool.set_spin(_Spins.active[-1][0] if _Spins.active else _Spins.base)


class _Off:
    lock = ForkSafeLock()  # fresh in a forked child
    holder = 0  # the thread kept off the worker's CPUs (its ident), 0 when none
    saved: set[int] = set()  # its own CPU set, given back after the block
    kept: set[int] = set()  # the set it runs on inside the block


def _set_cpus(cpus: set[int]) -> bool:
    """Lets the calling thread run on ``cpus`` only; False when the system refuses (that only costs time)."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def caller_off_worker() -> Iterator[None]:
    """Keeps the calling thread off the worker's CPUs inside the block (and gives it its own CPU set back after).

    Inside a channels-last plan each split layer hands half of its work to the worker. When the caller waited
    for the worker in a futex (the worker had been woken late), the worker's wake-up put the caller on the
    worker's CPU, and the two then shared one core for the rest of the call: SqueezeNet at one image, two
    threads, ran 7 ms a call on two cores and 12-24 ms when the caller had moved. Only one thread at a time is
    kept off (a second one running a plan meanwhile may use every CPU), and only where the thread has two CPUs,
    the worker's and one other: with more, keeping it off the worker's (all but one) would tie it to one CPU,
    and a caller moved there is moved off by :meth:`Pool.run` instead. Nothing changes when the pool has no
    worker. A thread started inside the block inherits the kept-off set (:func:`caller_anywhere` lifts it);
    a CPU set the thread is given meanwhile is replaced by its own at the end.
    """
    pool = _HOLDER.pool
    keep = pool.worker_cpus if pool is not None and _HOLDER.pid == os.getpid() else frozenset()
    held = False
    if keep:
        with _Off.lock:
            if not _Off.holder:
                try:
                    mine = os.sched_getaffinity(0)
                except OSError:
                    mine = set()
                if len(mine) == 2 and mine - keep:
                    _Off.holder, _Off.saved, _Off.kept = threading.get_ident(), mine, mine - keep
                    held = True  # before the call: whatever happens next, the finally below gives the set back
                    _set_cpus(mine - keep)
    try:
        yield
    finally:
        if held:
            if not _set_cpus(_Off.saved):  # the process's CPUs changed meanwhile: every CPU it may use
                _set_cpus(set(range(os.cpu_count() or 1)))
            _Off.holder = 0


def _holds() -> bool:
    return bool(_Off.holder) and _Off.holder == threading.get_ident()


@contextlib.contextmanager
def caller_anywhere() -> Iterator[None]:
    """Inside :func:`caller_off_worker`, lets the calling thread run on its own CPU set again for the block (a
    thread started meanwhile inherits it): :mod:`hubkit.ops._chunks` runs its halves on two threads of its own."""
    lifted = _holds() and _set_cpus(_Off.saved)
    try:
        yield
    finally:
        if lifted:
            _set_cpus(_Off.kept)


def own_cpus() -> set[int]:
    """The CPUs the calling thread may run on, as outside :func:`caller_off_worker` (a thread it starts may use
    them all: :mod:`hubkit.ops._chunks`)."""
    return set(_Off.saved) if _holds() else os.sched_getaffinity(0)


def _after_fork_in_child() -> None:
    # the parent's worker does not exist here, and the holder's lock may be held by a parent thread
    global _holder_lock
    _holder_lock = threading.Lock()
    _HOLDER.pool = None
    _Spins.active = []  # blocks of parent threads that do not exist here
    _Off.holder = 0
    _HOLDER.pid = 0


def _at_exit() -> None:
    pool = _HOLDER.pool
    if pool is not None and _HOLDER.pid == os.getpid():
        pool.stop()


def _runner() -> Any:
    """``hk_pool_run`` as a ctypes function (made once: a prototype per call cost ~2 us of a small layer's 30)."""
    code = compile_code()
    if code.runner is None:
        code.runner = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                       ctypes.c_int64)(code.run)
    return code.runner


def handoff_us(job_us: float = 0.0, calls: int = 2000) -> tuple[float, float, float]:
    """What one hand-off costs, in microseconds, by minimum over 20 batches of ``calls // 20`` calls.

    Each half of the job spins ``job_us`` (0: an empty job, which the caller mostly steals).
    Returns ``(paired, alone, worker_share)``: a call running both halves through the pool, one
    half called directly (both through ctypes), and the fraction of jobs the worker ran.
    """
    pool = get_pool()
    if not pool.acquire():
        raise RuntimeError("the pool is busy")
    try:
        code = compile_code()
        run = _runner()
        one = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(code.busy)
        arg = (ctypes.c_int64 * 1)(int(job_us * code.ticks_per_us))
        argp = ctypes.addressof(arg)
        ctl, busy, spin = pool.ctl, code.busy, pool.caller_spin
        per = max(1, calls // 20)
        paired = alone = float("inf")
        worker = 0
        for _ in range(20):
            t0 = time.perf_counter()
            for _ in range(per):
                worker += 1 if run(ctl, busy, argp, argp, spin) else 0
            t1 = time.perf_counter()
            for _ in range(per):
                one(argp)
            t2 = time.perf_counter()
            paired, alone = min(paired, (t1 - t0) / per), min(alone, (t2 - t1) / per)
        return paired * 1e6, alone * 1e6, worker / (20 * per)
    finally:
        pool.release()
