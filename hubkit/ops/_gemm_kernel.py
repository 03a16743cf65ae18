"""A float32 GEMM micro-kernel written as LLVM IR with explicit ``<16 x float>`` (or ``<8 x float>``) vectors.

The kernel computes ``mr`` rows of ``C``, two vectors of columns at a time (32 columns, one column panel,
with AVX-512's 16 lanes; 16 columns, half a panel, with AVX2's 8: :func:`lanes`), as ``A_panel @ B``
over the whole depth ``k``, with the ``2 * mr`` accumulators as SSA vector values: LLVM keeps them in
registers by construction (a plain Numba loop over a 4x32 block did not, see
docs/performance_notes.md). ``A`` is read in place (element ``(i, p)`` at ``a[i * lda + p]``): each
step broadcasts one value of each of the ``mr`` rows; ``B``'s row ``p`` is read as two vectors at
``b + p * 32`` (plus 16 for a panel's second half with 8 lanes). The loop takes :data:`UNROLL` (8 lanes: :data:`UNROLL_8`) steps
per iteration (one pointer per stream, the steps at constant offsets). 16-lane tiles are compiled with
LLVM's machine scheduler off, which keeps the IR's order: with it on, the broadcasts were hoisted ahead
of their FMAs and spilled (8-lane tiles need it on, :func:`_scheduling`). The
4-step loop measured 1.12-1.19x the one-step loop by min on the MLP's batch-64 layers; 2 or 8 steps,
a software prefetch of ``B`` 4-16 steps ahead and depth blocks of 400 or 800 instead of 256 measured
within the noise or slower. ``hk_sgemm_tile``'s ``ldb`` is the column panels' stride (``n`` being at most 32
there, only one panel is read).
(Packing ``A`` into ``k``-major panels made the loop a few instructions
shorter but the packing cost more than that: 42 us of a 456 us 64x784x512 call.)

The IR is text made here, compiled by ``llvmlite.binding`` for the host CPU (its name and
features, so AVX-512 where present; the object code is cached on disk next to Numba's cache, keyed
by a hash of the IR, the CPU name, its features, the scheduler setting and llvmlite's version; whoever can write there can
already replace Numba's cached kernels) and called through a function address: from Numba with
``hubkit.ops._gemm_numba.call_tile`` (an intrinsic: the address is a run-time argument, so kernels
that call it cache on disk), from Python with ctypes. Nothing is compiled at import; the first
:func:`kernel_address` call compiles every ``mr`` variant in one module (0.2-0.4 s; 0.27 s with the
wrapping tiles on the Zen 3, 0.13 without; 0.1 s from the cached object code).

Signature of the entry point (all ``i64``; pointers as addresses)::

    hk_sgemm_tile(mr, k, a, lda, b, ldb, c, ldc, n, flags, bias)

The entry the Numba loops call generalises it::

    hk_sconv_tile(mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf)

``A`` is then ``taps`` runs of ``k`` steps, run ``t`` at ``a + t * tstride`` (a convolution's kernel rows
read in place, :mod:`hubkit.ops._conv_taps`; ``taps = 1`` is ``hk_sgemm_tile``), ``B`` their ``taps * k``
rows, the accumulators in registers across the runs. The convolutions' entry takes three more::

    hk_swrap_tile(mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf, col0, width, wrap)

Its rows are pixels of output rows ``width`` wide, the first at column ``col0``: row ``i`` of ``A`` is
``lda`` floats after row ``i - 1``, and ``wrap`` more where it starts the next output row, so a tile is not cut
at the end of a row. It is a tile function of its own (``hk_wtile_<mr>``): computing the rows' offsets in the
shared one cost the plain GEMM's small-depth tiles 3-7% (3025x16x64: 92 -> 96-99 us, one thread, alternating
processes), also behind a branch on ``width``. ``n`` may pass 32: the tile then runs along the
``ceil(n / 32)`` column panels of ``B`` (``bstride`` floats apart; ``C``, the bias and the prefetch stream
advance with them), so a row panel is one call. Against a call per column panel (``packed_matmul``, 3120
rows, 256 columns, same minutes): per tile 66 instead of 89 ns besides 5.8 ns per step of depth; depth 32
0.79x the time, 64 0.90x, 256 0.96x; 32 columns (one panel) unchanged. Each iteration also prefetches two lines (8 lanes: one per half-panel tile) of the
stream at ``pf`` into L2 (:data:`PF_FLOATS` floats per step): ``gemm_rows`` points it at a column panel it
will read next when few rows read each panel, so the weights of a 7x7 map's layer stream from memory while
the tiles compute. 49x512x2048, caches flushed before each call:
1.17-1.18 ms without, 0.96 prefetching two panels ahead (0.73 warm); ResNet-50 at batch 1 1.21-1.26x
onnxruntime without, 1.15-1.16x with (alternating processes, each against onnxruntime in the same process).
``pf = 0`` means no stream: the main loop then runs in a copy without the prefetch instruction (chosen once per
run of ``A``). Every other caller passes 0; they used to pass ``b``, whose lines were in cache already, and that
instruction cost the 6-row AVX2 tile 1-2% (one thread, Zen 3, alternating processes: 64x784x512 525-529 ->
517-518 us, 64x512x512 350-356 -> 342-345, 256x512x512 1374-1415 -> 1362-1369).

``n`` (1..32 for ``hk_sgemm_tile``) is the number of valid columns: in a panel of fewer than 32 the loads of the bias and of ``C``
(to accumulate) and the stores of ``C`` are masked; ``B`` is read whole, so it is padded to 32
columns (``hubkit.ops._packed_gemm.pack_weights``). ``flags`` selects ``ACCUMULATE``
(``C += A @ B``), ``BIAS_COLS`` (``bias[j]`` added to column ``j``), ``RELU`` and ``RELU6``, applied
in that order while the tile is in registers. ``mr`` is 1 to :func:`max_mr`; ``k`` is at least 1.

A form for NCHW 1x1 convolutions (``W[Cout, Cin] @ X[Cin, HW]``, ``X`` read in place with masked
loads for the last panel, a bias per row) was built and measured against np.matmul on ResNet-50
and SqueezeNet shapes at batch 1: 0.67-1.11x with ``X`` read in place (rows ``HW`` floats apart),
0.26-0.82x with ``X`` copied into panels by a Numba loop first; it was removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from hubkit.ops._forksafe import ForkSafeLock

__all__ = [
    "ACCUMULATE",
    "BIAS_COLS",
    "NR",
    "RELU",
    "RELU6",
    "kernel_address",
    "kernel_ir",
    "l2_bytes",
    "lanes",
    "max_mr",
    "nc_bytes",
]

NR = 32
"""Columns of a tile (two 16-wide vectors)."""

ACCUMULATE = 1
BIAS_COLS = 2
RELU = 8
RELU6 = 16

_lock = ForkSafeLock()  # fresh in a forked child: a parent thread may hold it while compiling


class _State:
    engine: Any = None
    address: int = 0
    conv_address: int = 0
    wrap_address: int = 0
    pool_address: int = 0
    pool_job: int = 0
    mr: int = 0


_STATE = _State()


def _host_features() -> tuple[str, str]:
    import llvmlite.binding as llvm

    name = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features().flatten()
    return name, features


def max_mr(features: str | None = None) -> int:
    """Rows of the widest tile for the host (or for the feature string ``features``).

    With AVX-512 (32 vector registers) 13 rows of 32 columns: 26 accumulators, a broadcast, and the two
    vectors of ``B`` of two steps (LLVM loads the next step's ``B`` ahead of time). 14 rows (28
    accumulators) left one register short: one accumulator spilled to the stack and came back at every
    step, and the 14-row tiles ran 0.84-0.91x the 13-row tiles' GFLOP/s on ResNet-50's 1x1 layers and the
    MLP's 4096-row layers (``hubkit/ops/_packed_gemm.py``; same process, one thread). With AVX2 (16
    registers of 8 floats, :func:`lanes` 8) 6 rows of 16 columns: 12 accumulators, two vectors of ``B``
    and a broadcast. Otherwise 3 rows of 16-wide vectors that LLVM splits in halves.
    """
    if features is None:
        features = _host_features()[1]
    flags = features.split(",")
    if "+avx512f" in flags:
        return AVX512_MR
    return AVX2_MR if lanes(features) == 8 else 3


AVX512_MR = 13
"""Rows of the AVX-512 tile (see :func:`max_mr`)."""

AVX2_MR = 6
"""Rows of the AVX2 tile (see :func:`max_mr`)."""


def lanes(features: str | None = None) -> int:
    """Floats per vector of the tile for the host (or ``features``): 8 with AVX2 and FMA but no AVX-512, else 16.

    A tile is two vectors wide: 32 columns (a whole panel of ``B``) with 16 lanes, half a panel with 8."""
    if features is None:
        features = _host_features()[1]
    flags = features.split(",")
    return 8 if "+avx2" in flags and "+fma" in flags and "+avx512f" not in flags else 16


def l2_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """Bytes of the L2 cache of CPU 0 as Linux reports it (under ``root``), or None elsewhere."""
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(root, entry, "level")) as f:
                level = f.read(16).strip()
            with open(os.path.join(root, entry, "size")) as f:
                size = f.read(32).strip().upper()
        except (OSError, ValueError):  # unreadable, or not text (UnicodeDecodeError)
            continue
        scale = {"K": 1024, "M": 1024 * 1024}.get(size[-1:], 1)
        digits = size[:-1] if scale != 1 else size
        if level == "2" and digits.isascii() and digits.isdigit():
            return int(digits) * scale
    return None


def nc_bytes() -> int:
    """Bytes of ``B`` (one depth block) that ``gemm_rows`` runs every row block over: half the L2, at most 512 KB.

    512 KB measured best on an Ice Lake with 1.25 MB of L2 (eighth session). On a Zen 3 with 512 KB, 512 KB blocks
    left no room for ``A`` and ``C``: 256 KB ran the 6-row tiles 1.04x faster at 4096x784x512 and 64x512x512
    (one thread, same minutes). Unknown L2 sizes get 512 KB."""
    l2 = l2_bytes()
    return 512 * 1024 if l2 is None else max(64 * 1024, min(512 * 1024, l2 // 2))


def _splat(name: str, scalar: str, lanes: int) -> list[str]:
    return [
        f"  {name}.i = insertelement <{lanes} x float> poison, float {scalar}, i64 0",
        f"  {name} = shufflevector <{lanes} x float> {name}.i, <{lanes} x float> poison, <{lanes} x i32> zeroinitializer",
    ]


UNROLL = 4
"""Steps of ``k`` per iteration of the 16-lane tile's main loop."""

UNROLL_8 = 2
"""Steps per iteration of the 8-lane tile's main loop: 2 ran the 6-row tiles 1.02-1.03x faster than 4 (4096x784x512,
64x512x512, 196x1024x256; one thread, alternating processes, Zen 3)."""

PF_FLOATS = 8
"""Floats of the prefetch stream per step of depth: two 64-byte lines per iteration of :data:`UNROLL` steps, a
quarter of what the tile reads of ``B`` (so four tiles fetch the next column panel of ``B`` whole). With 8-wide
vectors each half of a panel prefetches half of them, one line per iteration."""


def _step(emit: Any, mr: int, lanes: int, tag: str, bp: str, ap: str, u: int, src: dict[int, dict[int, str]]) -> None:
    """One step of depth: row ``u`` of B at ``bp`` (rows ``NR`` floats apart), column ``u`` of A at ``ap``."""
    vt = f"<{lanes} x float>"
    for h in range(2):
        emit(f"  %{tag}bp{h} = getelementptr float, ptr {bp}, i64 {u * NR + h * lanes}")
        emit(f"  %{tag}b{h} = load {vt}, ptr %{tag}bp{h}, align {lanes * 4}")
    for i in range(mr):
        emit(f"  %{tag}ap{i} = getelementptr float, ptr {ap}, i64 %arow{i}")
        emit(f"  %{tag}apu{i} = getelementptr float, ptr %{tag}ap{i}, i64 {u}")
        emit(f"  %{tag}as{i} = load float, ptr %{tag}apu{i}, align 4")
        for line in _splat(f"%{tag}av{i}", f"%{tag}as{i}", lanes):
            emit(line)
        for h in range(2):
            emit(
                f"  %{tag}acc{i}_{h} = call {vt} @llvm.fma.v{lanes}f32({vt} %{tag}av{i}, "
                f"{vt} %{tag}b{h}, {vt} {src[i][h]})"
            )


def _phis(emit: Any, mr: int, lanes: int, name: str, *incoming: tuple[str, str]) -> None:
    """``%<name><i>_<h> = phi`` of the tile's accumulators: from each ``(value prefix, block)`` of ``incoming`` (a
    prefix ``zeroinitializer`` is the constant)."""
    def value(prefix: str, i: int, h: int) -> str:
        return prefix if prefix == "zeroinitializer" else f"%{prefix}{i}_{h}"

    for i in range(mr):
        for h in range(2):
            sources = ", ".join(f"[{value(v, i, h)}, %{block}]" for v, block in incoming)
            emit(f"  %{name}{i}_{h} = phi <{lanes} x float> {sources}")


def _tile_function(mr: int, lanes: int, wrap: bool = False) -> str:
    """IR of ``hk_tile_<mr>``: the tile for ``mr`` rows and ``2 * lanes`` columns (see the module docstring); with
    ``wrap``, ``hk_wtile_<mr>``, whose rows of ``A`` jump where they pass the end of an output row."""
    vt = f"<{lanes} x float>"
    mt = f"<{lanes} x i1>"
    cols = 2 * lanes  # columns of the tile: a whole panel of B (16 lanes) or half of one (8)
    halves = NR // cols
    unroll = UNROLL if lanes == 16 else UNROLL_8
    lines: list[str] = []
    emit = lines.append
    emit(
        f"define internal void @hk_{'w' if wrap else ''}tile_{mr}(i64 %taps, i64 %tstride, i64 %k, i64 %ai, i64 %lda, "
        "i64 %b0i, i64 %bstride, i64 %c0i, i64 %ldc, i64 %ntot, i64 %flags, i64 %bias0i, i64 %pf0i"
        f"{', i64 %col0, i64 %width, i64 %wrap' if wrap else ''}) #0 {{"
    )
    emit("entry:")
    emit("  %a = inttoptr i64 %ai to ptr")
    if wrap:
        # row i of A lda floats after row i - 1, plus `wrap` more where it starts a new output row (the rows are
        # pixels of output rows `width` wide, the first at column col0)
        emit("  %arow0 = add i64 0, 0")
        emit("  %col.0 = add i64 %col0, 0")
        for i in range(1, mr):
            emit(f"  %coln.{i} = add i64 %col.{i - 1}, 1")
            emit(f"  %wraps.{i} = icmp eq i64 %coln.{i}, %width")
            emit(f"  %col.{i} = select i1 %wraps.{i}, i64 0, i64 %coln.{i}")
            emit(f"  %step.{i} = add i64 %arow{i - 1}, %lda")
            emit(f"  %stepw.{i} = add i64 %step.{i}, %wrap")
            emit(f"  %arow{i} = select i1 %wraps.{i}, i64 %stepw.{i}, i64 %step.{i}")
    else:
        for i in range(mr):
            emit(f"  %arow{i} = mul i64 %lda, {i}")
    # the main loop takes `unroll` steps per iteration (row p + u of B and column p + u of A at
    # constant offsets from the iteration's pointers: one increment per stream); a one-step loop
    # does the remaining k % unroll steps
    emit(f"  %kmain = and i64 %k, -{unroll}")
    emit("  %hasmain = icmp ne i64 %kmain, 0")
    emit(f"  %tbstep = mul i64 %k, {NR}")
    emit("  %bstep = mul i64 %bstride, 4")
    emit(f"  %pfhalf = mul i64 %k, {PF_FLOATS * 4 // halves}")
    emit("  %pfhalft = mul i64 %pfhalf, %taps")
    emit("  br label %panel")
    # the outermost loop, over the tile's column blocks of ntot columns: block j in column panel j / halves
    # (its B and prefetch stream bstride floats past the previous panel's; the second half of a panel 16 floats
    # into its rows, and its prefetch stream past the first half's), its columns of C and of the bias at
    # cols floats past the previous block's
    emit("panel:")
    emit("  %j = phi i64 [0, %entry], [%jn, %panelend]")
    emit(f"  %jp = udiv i64 %j, {halves}")
    emit(f"  %jh = urem i64 %j, {halves}")
    emit("  %jb = mul i64 %jp, %bstep")
    emit(f"  %jhb = mul i64 %jh, {cols * 4}")
    emit("  %jbh = add i64 %jb, %jhb")
    emit("  %bi = add i64 %b0i, %jbh")
    emit("  %b = inttoptr i64 %bi to ptr")
    emit("  %jpf = mul i64 %jh, %pfhalft")
    emit("  %pfj = add i64 %pf0i, %jb")
    emit("  %pfi = add i64 %pfj, %jpf")
    emit("  %pf = inttoptr i64 %pfi to ptr")
    emit("  %haspf = icmp ne i64 %pf0i, 0")
    emit(f"  %jc = mul i64 %j, {cols * 4}")
    emit("  %ci = add i64 %c0i, %jc")
    emit("  %c = inttoptr i64 %ci to ptr")
    emit("  %biasi = add i64 %bias0i, %jc")
    emit("  %bias = inttoptr i64 %biasi to ptr")
    emit(f"  %j0 = mul i64 %j, {cols}")
    emit("  %left = sub i64 %ntot, %j0")
    emit(f"  %wide = icmp ugt i64 %left, {cols}")
    emit(f"  %n = select i1 %wide, i64 {cols}, i64 %left")
    # column masks for n < cols
    emit("  %n32 = trunc i64 %n to i32")
    emit(f"  %nins = insertelement <{lanes} x i32> poison, i32 %n32, i64 0")
    emit(f"  %nsplat = shufflevector <{lanes} x i32> %nins, <{lanes} x i32> poison, <{lanes} x i32> zeroinitializer")
    for h in range(2):
        idx = ", ".join(f"i32 {j}" for j in range(h * lanes, (h + 1) * lanes))
        emit(f"  %m{h} = icmp ult <{lanes} x i32> <{idx}>, %nsplat")
    emit("  br label %tap")
    # the outer loop over taps: tap t reads A at a + t * tstride (its k values of each row in place) and
    # rows t * k .. t * k + k - 1 of B; the accumulators carry over from tap to tap
    emit("tap:")
    emit("  %t = phi i64 [0, %panel], [%tn, %tapend]")
    _phis(emit, mr, lanes, "tacc", ("zeroinitializer", "panel"), ("nacc", "tapend"))
    emit("  %taoff = mul i64 %t, %tstride")
    emit("  %at = getelementptr float, ptr %a, i64 %taoff")
    emit("  %tboff = mul i64 %t, %tbstep")
    emit("  %bt = getelementptr float, ptr %b, i64 %tboff")
    emit("  %tpoff = mul i64 %t, %k")
    pf_step = PF_FLOATS // halves
    emit(f"  %tpoffs = mul i64 %tpoff, {pf_step}")
    emit("  %pft = getelementptr float, ptr %pf, i64 %tpoffs")
    emit("  br i1 %hasmain, label %main, label %mid")
    # the main loop in two copies, chosen once per tap: with a prefetch stream (pf != 0) and without (the
    # prefetch instruction, though its line is in cache already, cost the 6-row AVX2 tile 1-1.5%)
    emit("main:")
    emit("  br i1 %haspf, label %loop, label %xloop")
    for tag, prefetch in (("", True), ("x", False)):
        emit(f"{tag}loop:")
        emit(f"  %{tag}p = phi i64 [0, %main], [%{tag}pn, %{tag}loop]")
        _phis(emit, mr, lanes, f"{tag}acc", ("tacc", "main"), (f"{tag}u{unroll - 1}acc", f"{tag}loop"))
        emit(f"  %{tag}boff = mul i64 %{tag}p, {NR}")
        emit(f"  %{tag}bpl = getelementptr float, ptr %bt, i64 %{tag}boff")
        emit(f"  %{tag}apl = getelementptr float, ptr %at, i64 %{tag}p")
        if prefetch:  # cache lines of the prefetch stream per iteration (into L2): pf_step floats per step of depth
            emit(f"  %pfoff = mul i64 %p, {pf_step}")
            emit("  %pfp0 = getelementptr float, ptr %pft, i64 %pfoff")
            for line in range(max(1, pf_step * unroll * 4 // 64)):  # at least one line per iteration
                emit(f"  %pfl{line} = getelementptr float, ptr %pfp0, i64 {line * 16}")
                emit(f"  call void @llvm.prefetch.p0(ptr %pfl{line}, i32 0, i32 2, i32 1)")
        for u in range(unroll):
            src = {
                i: {h: (f"%{tag}acc{i}_{h}" if u == 0 else f"%{tag}u{u - 1}acc{i}_{h}") for h in range(2)}
                for i in range(mr)
            }
            _step(emit, mr, lanes, f"{tag}u{u}", f"%{tag}bpl", f"%{tag}apl", u, src)
        emit(f"  %{tag}pn = add nuw nsw i64 %{tag}p, {unroll}")
        emit(f"  %{tag}done = icmp eq i64 %{tag}pn, %kmain")
        emit(f"  br i1 %{tag}done, label %mid, label %{tag}loop")
    emit("mid:")
    _phis(emit, mr, lanes, "macc", ("tacc", "tap"), (f"u{unroll - 1}acc", "loop"), (f"xu{unroll - 1}acc", "xloop"))
    emit("  %hasrest = icmp ult i64 %kmain, %k")
    emit("  br i1 %hasrest, label %rest, label %tapend")
    emit("rest:")
    emit("  %q = phi i64 [%kmain, %mid], [%qn, %rest]")
    _phis(emit, mr, lanes, "racc", ("macc", "mid"), ("r0acc", "rest"))
    emit(f"  %rboff = mul i64 %q, {NR}")
    emit("  %rbpl = getelementptr float, ptr %bt, i64 %rboff")
    emit("  %rapl = getelementptr float, ptr %at, i64 %q")
    _step(emit, mr, lanes, "r0", "%rbpl", "%rapl", 0, {i: {h: f"%racc{i}_{h}" for h in range(2)} for i in range(mr)})
    emit("  %qn = add nuw nsw i64 %q, 1")
    emit("  %rdone = icmp eq i64 %qn, %k")
    emit("  br i1 %rdone, label %tapend, label %rest")
    emit("tapend:")
    _phis(emit, mr, lanes, "nacc", ("macc", "mid"), ("r0acc", "rest"))
    emit("  %tn = add nuw nsw i64 %t, 1")
    emit("  %tdone = icmp uge i64 %tn, %taps")
    emit("  br i1 %tdone, label %epi, label %tap")
    emit("epi:")
    emit(f"  %full = icmp eq i64 %n, {cols}")
    # the epilogue, one step at a time (each step a branch on a flag; the tile stays in registers)
    state = {i: {h: f"%nacc{i}_{h}" for h in range(2)} for i in range(mr)}

    def step(label: str, flag: int, body: Any) -> None:
        emit(f"  %f.{label} = and i64 %flags, {flag}")
        emit(f"  %t.{label} = icmp ne i64 %f.{label}, 0")
        emit(f"  br i1 %t.{label}, label %do.{label}, label %skip.{label}")
        emit(f"do.{label}:")
        new = body()
        emit(f"  br label %skip.{label}")
        emit(f"skip.{label}:")
        for i in range(mr):
            for h in range(2):
                emit(
                    f"  %s.{label}.{i}_{h} = phi {vt} [{state[i][h]}, %{prev[0]}], "
                    f"[{new[i][h]}, %do.{label}]"
                )
                state[i][h] = f"%s.{label}.{i}_{h}"
        prev[0] = f"skip.{label}"

    prev = ["epi"]

    def masked_load(name: str, ptr: str, h: int) -> None:
        emit(
            f"  {name} = call {vt} @llvm.masked.load.v{lanes}f32.p0(ptr {ptr}, i32 4, "
            f"{mt} %m{h}, {vt} zeroinitializer)"
        )

    def accumulate() -> dict[int, dict[int, str]]:
        # masked loads: with all lanes set they cost what plain loads do, and no extra block
        new: dict[int, dict[int, str]] = {}
        for i in range(mr):
            emit(f"  %crow{i}.o = mul i64 %ldc, {i}")
            emit(f"  %crow{i} = getelementptr float, ptr %c, i64 %crow{i}.o")
            emit(f"  %crowh{i} = getelementptr float, ptr %crow{i}, i64 {lanes}")
            new[i] = {}
            for h in range(2):
                masked_load(f"%cv{i}_{h}", f"%crow{i}" if h == 0 else f"%crowh{i}", h)
                emit(f"  %ca{i}_{h} = fadd {vt} {state[i][h]}, %cv{i}_{h}")
                new[i][h] = f"%ca{i}_{h}"
        return new

    def bias_cols() -> dict[int, dict[int, str]]:
        emit(f"  %bsp1 = getelementptr float, ptr %bias, i64 {lanes}")
        masked_load("%bs0", "%bias", 0)
        masked_load("%bs1", "%bsp1", 1)
        new: dict[int, dict[int, str]] = {}
        for i in range(mr):
            new[i] = {}
            for h in range(2):
                emit(f"  %bc{i}_{h} = fadd {vt} {state[i][h]}, %bs{h}")
                new[i][h] = f"%bc{i}_{h}"
        return new

    def relu(label: str, cap: bool) -> Any:
        def body() -> dict[int, dict[int, str]]:
            # as hubkit.ops._epilogue.activate: Relu: v <= 0 -> 0 (NaN kept, -0.0 -> 0.0);
            # Relu6: v < 0 -> 0, v > 6 -> 6 (NaN and -0.0 kept)
            six = f"<{', '.join(['float 6.0'] * lanes)}>"
            new: dict[int, dict[int, str]] = {}
            for i in range(mr):
                new[i] = {}
                for h in range(2):
                    v = state[i][h]
                    if cap:
                        emit(f"  %{label}l{i}_{h} = fcmp olt {vt} {v}, zeroinitializer")
                        emit(f"  %{label}g{i}_{h} = fcmp ogt {vt} {v}, {six}")
                        emit(f"  %{label}a{i}_{h} = select {mt} %{label}g{i}_{h}, {vt} {six}, {vt} {v}")
                        emit(
                            f"  %{label}v{i}_{h} = select {mt} %{label}l{i}_{h}, {vt} "
                            f"zeroinitializer, {vt} %{label}a{i}_{h}"
                        )
                    else:
                        emit(f"  %{label}l{i}_{h} = fcmp ole {vt} {v}, zeroinitializer")
                        emit(f"  %{label}v{i}_{h} = select {mt} %{label}l{i}_{h}, {vt} zeroinitializer, {vt} {v}")
                    new[i][h] = f"%{label}v{i}_{h}"
            return new

        return body

    step("acc", ACCUMULATE, accumulate)
    step("bcol", BIAS_COLS, bias_cols)
    step("relu", RELU, relu("rl", False))
    step("relu6", RELU6, relu("r6", True))
    emit("  br i1 %full, label %storef, label %storem")
    emit("storef:")
    for i in range(mr):
        emit(f"  %srow{i}.o = mul i64 %ldc, {i}")
        emit(f"  %srow{i} = getelementptr float, ptr %c, i64 %srow{i}.o")
        emit(f"  %srowh{i} = getelementptr float, ptr %srow{i}, i64 {lanes}")
        emit(f"  store {vt} {state[i][0]}, ptr %srow{i}, align 4")
        emit(f"  store {vt} {state[i][1]}, ptr %srowh{i}, align 4")
    emit("  br label %panelend")
    emit("storem:")
    for i in range(mr):
        emit(f"  %smrow{i}.o = mul i64 %ldc, {i}")
        emit(f"  %smrow{i} = getelementptr float, ptr %c, i64 %smrow{i}.o")
        emit(f"  %smrowh{i} = getelementptr float, ptr %smrow{i}, i64 {lanes}")
        for h in range(2):
            ptr = f"%smrow{i}" if h == 0 else f"%smrowh{i}"
            emit(f"  call void @llvm.masked.store.v{lanes}f32.p0({vt} {state[i][h]}, ptr {ptr}, i32 4, {mt} %m{h})")
    emit("  br label %panelend")
    emit("panelend:")
    emit("  %jn = add nuw nsw i64 %j, 1")
    emit(f"  %jnext = mul i64 %jn, {cols}")
    emit("  %more = icmp ult i64 %jnext, %ntot")
    emit("  br i1 %more, label %panel, label %out")
    emit("out:")
    emit("  ret void")
    emit("}")
    return "\n".join(lines)


def _entry(mr_max: int, name: str, params: str, args: str, tile: str = "hk_tile_") -> str:
    """IR of the entry ``name(mr, *params)``: calls ``<tile><mr>`` with ``args`` (names of params, or numbers)."""

    def value(a: str) -> str:
        return f"i64 {a}" if a.isdigit() else f"i64 %{a}"

    lines = [
        f"define void @{name}(i64 %mr, {', '.join(f'i64 %{p}' for p in params.split())}) #0 {{",
        "entry:",
        f"  switch i64 %mr, label %done [{' '.join(f'i64 {mr}, label %t{mr}' for mr in range(1, mr_max + 1))}]",
    ]
    for mr in range(1, mr_max + 1):
        lines += [f"t{mr}:", f"  call void @{tile}{mr}({', '.join(value(a) for a in args.split())})", "  ret void"]
    lines += ["done:", "  ret void", "}"]
    return "\n".join(lines)


def kernel_ir(mr_max: int, lanes: int = 16) -> str:
    """The module's IR text: ``hk_tile_1`` .. ``hk_tile_<mr_max>`` on ``lanes``-wide vectors (16 or 8) and the
    entries ``hk_sgemm_tile``, ``hk_sconv_tile`` and ``hk_swrap_tile`` (``hk_wtile_<mr>``)."""
    if lanes not in (8, 16):
        raise ValueError(f"lanes must be 8 or 16, not {lanes}")
    vt = f"<{lanes} x float>"
    parts = [
        f"declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})",
        f"declare {vt} @llvm.masked.load.v{lanes}f32.p0(ptr, i32 immarg, <{lanes} x i1>, {vt})",
        f"declare void @llvm.masked.store.v{lanes}f32.p0({vt}, ptr, i32 immarg, <{lanes} x i1>)",
        "declare void @llvm.prefetch.p0(ptr, i32 immarg, i32 immarg, i32 immarg)",
    ]
    for mr in range(1, mr_max + 1):
        parts.append(_tile_function(mr, lanes))
        parts.append(_tile_function(mr, lanes, wrap=True))
    # the entries: hk_sgemm_tile (one run of A, no prefetch stream) and hk_sconv_tile (every argument)
    parts.append(_entry(mr_max, "hk_sgemm_tile", "k a lda b ldb c ldc n flags bias", "1 0 k a lda b ldb c ldc n flags bias 0"))
    parts.append(_entry(mr_max, "hk_sconv_tile", "taps tstride k a lda b bstride c ldc n flags bias pf",
                        "taps tstride k a lda b bstride c ldc n flags bias pf"))
    wrap = "taps tstride k a lda b bstride c ldc n flags bias pf col0 width wrap"
    parts.append(_entry(mr_max, "hk_swrap_tile", wrap, wrap, "hk_wtile_"))
    from hubkit.ops._pool_kernel import pool_ir

    parts.append(pool_ir(lanes))  # the NHWC max pool: compiled and cached with the tiles
    width = lanes * 32
    parts.append(f'attributes #0 = {{ nounwind "min-legal-vector-width"="{width}" "prefer-vector-width"="{width}" }}')
    return "\n\n".join(parts) + "\n"


def _init_llvm() -> None:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@contextlib.contextmanager
def _scheduling(lanes: int) -> Iterator[None]:
    """LLVM's machine scheduler off while 16-lane tiles compile (a process-wide LLVM option, restored after).

    With it on, the 13-row tile's unrolled loop had its broadcasts hoisted ahead of their FMAs and spilled (82
    stack accesses per iteration); with it off the IR's order is kept (4). The 8-lane tile is the other way
    round: with it off, the next step's ``B`` was loaded ahead, one accumulator of the 6-row tile went to the
    stack and back every iteration (a store-to-load chain through each step's FMA), and the tiles ran 63-66
    GFLOP/s; with it on nothing spills and they run 82-86 (4096x784x512 and 64x512x512, one thread, AMD Zen 3).
    """
    import llvmlite.binding as llvm

    if lanes != 16:
        yield
        return
    llvm.set_option("", "-enable-misched=false")
    try:
        yield
    finally:
        llvm.set_option("", "-enable-misched=true")


def _object_path(ir: str, name: str, features: str) -> str | None:
    """Where the machine code of ``ir`` for this CPU is cached (next to Numba's cache), or None."""
    import hashlib

    import llvmlite

    from hubkit.ops import _numba

    try:
        root = _numba.cache_dir()
    except Exception:  # no cache directory known: compile every time
        return None
    schedule = f"misched={lanes(features) != 16}"  # how the IR compiles is part of the key, as the IR is
    key = hashlib.sha256("\0".join([ir, name, features, schedule, llvmlite.__version__]).encode()).hexdigest()[:32]
    return os.path.join(root, "hubkit_gemm", f"tile_{key}.o")


def _build() -> None:

    import llvmlite.binding as llvm

    name, features = _host_features()
    mr = max_mr(features)
    _init_llvm()
    ir = kernel_ir(mr, lanes(features))
    mod = llvm.parse_assembly(ir)
    mod.verify()
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(cpu=name, features=features, opt=3, codemodel="jitdefault")
    engine = llvm.create_mcjit_compiler(mod, tm)
    path = _object_path(ir, name, features)

    def notify(module: Any, buffer: bytes) -> None:  # compiled: keep the object code for the next process
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(buffer)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
        except OSError:
            pass

    def load(module: Any) -> bytes | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    engine.set_object_cache(notify, load)
    with _scheduling(lanes(features)):
        engine.finalize_object()
    _STATE.engine = engine  # keeps the machine code alive for the process
    _STATE.mr = mr
    _STATE.conv_address = engine.get_function_address("hk_sconv_tile")
    _STATE.wrap_address = engine.get_function_address("hk_swrap_tile")
    _STATE.pool_address = engine.get_function_address("hk_maxpool_f32")
    _STATE.pool_job = engine.get_function_address("hk_maxpool_job")
    _STATE.address = engine.get_function_address("hk_sgemm_tile")  # last: callers test it


def kernel_address() -> tuple[int, int]:
    """``(address of hk_sgemm_tile, max_mr)``, compiling the kernels on the first call."""
    if not _STATE.address:
        with _lock:
            if not _STATE.address:
                _build()
    return _STATE.address, _STATE.mr


def conv_kernel_address() -> int:
    """The address of ``hk_sconv_tile`` (the tile over taps, see the module docstring), compiling on the first call."""
    kernel_address()
    return _STATE.conv_address


def wrap_kernel_address() -> int:
    """The address of ``hk_swrap_tile`` (``hk_sconv_tile`` whose rows pass from output row to output row, see the
    module docstring), compiling on the first call."""
    kernel_address()
    return _STATE.wrap_address


def pool_kernel_address(job: bool = False) -> int:
    """The address of ``hk_maxpool_f32`` (``hk_maxpool_job`` with ``job``; :mod:`hubkit.ops._pool_kernel`), compiling
    on the first call."""
    kernel_address()
    return _STATE.pool_job if job else _STATE.pool_address


def assembly() -> str:
    """The host's machine code of the kernels (for inspection)."""
    import llvmlite.binding as llvm

    _init_llvm()
    name, features = _host_features()
    mod = llvm.parse_assembly(kernel_ir(max_mr(features), lanes(features)))
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=name, features=features, opt=3)
    with _scheduling(lanes(features)):
        return str(tm.emit_assembly(mod))
