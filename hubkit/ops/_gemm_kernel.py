"""A float32 GEMM micro-kernel written as LLVM IR with explicit ``<16 x float>`` vectors.

The kernel computes ``mr`` rows of ``C``, 32 columns (one column panel) at a time, as ``A_panel @ B`` over
the whole depth ``k``, with the ``2 * mr`` accumulators as SSA vector values: LLVM keeps them in
registers by construction (a plain Numba loop over a 4x32 block did not, see
docs/performance_notes.md). ``A`` is read in place (element ``(i, p)`` at ``a[i * lda + p]``): each
step broadcasts one value of each of the ``mr`` rows; ``B``'s row ``p`` is read as two 16-wide
vectors at ``b + p * 32``. The loop takes :data:`UNROLL` steps per iteration (one pointer per
stream, the steps at constant offsets) and is compiled with LLVM's machine scheduler off, which
keeps the IR's order: with it on, the broadcasts were hoisted ahead of their FMAs and spilled. The
4-step loop measured 1.12-1.19x the one-step loop by min on the MLP's batch-64 layers; 2 or 8 steps,
a software prefetch of ``B`` 4-16 steps ahead and depth blocks of 400 or 800 instead of 256 measured
within the noise or slower. ``hk_sgemm_tile``'s ``ldb`` is the column panels' stride (``n`` being at most 32
there, only one panel is read).
(Packing ``A`` into ``k``-major panels made the loop a few instructions
shorter but the packing cost more than that: 42 us of a 456 us 64x784x512 call.)

The IR is text made here, compiled by ``llvmlite.binding`` for the host CPU (its name and
features, so AVX-512 where present; the object code is cached on disk next to Numba's cache, keyed
by a hash of the IR, the CPU name, its features and llvmlite's version; whoever can write there can
already replace Numba's cached kernels) and called through a function address: from Numba with
``hubkit.ops._gemm_numba.call_tile`` (an intrinsic: the address is a run-time argument, so kernels
that call it cache on disk), from Python with ctypes. Nothing is compiled at import; the first
:func:`kernel_address` call compiles every ``mr`` variant in one module (0.2-0.4 s; 0.1 s from the
cached object code).

Signature of the entry point (all ``i64``; pointers as addresses)::

    hk_sgemm_tile(mr, k, a, lda, b, ldb, c, ldc, n, flags, bias)

The entry the Numba loops call generalises it::

    hk_sconv_tile(mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf)

``A`` is then ``taps`` runs of ``k`` steps, run ``t`` at ``a + t * tstride`` (a convolution's kernel rows
read in place, :mod:`hubkit.ops._conv_taps`; ``taps = 1`` is ``hk_sgemm_tile``), ``B`` their ``taps * k``
rows, the accumulators in registers across the runs. ``n`` may pass 32: the tile then runs along the
``ceil(n / 32)`` column panels of ``B`` (``bstride`` floats apart; ``C``, the bias and the prefetch stream
advance with them), so a row panel is one call. Against a call per column panel (``packed_matmul``, 3120
rows, 256 columns, same minutes): per tile 66 instead of 89 ns besides 5.8 ns per step of depth; depth 32
0.79x the time, 64 0.90x, 256 0.96x; 32 columns (one panel) unchanged. Each iteration also prefetches two lines of the
stream at ``pf`` into L2 (:data:`PF_FLOATS` floats per step): ``gemm_rows`` points it at a column panel it
will read next when few rows read each panel, so the weights of a 7x7 map's layer stream from memory while
the tiles compute (``pf = b``, already in cache, otherwise). 49x512x2048, caches flushed before each call:
1.17-1.18 ms without, 0.96 prefetching two panels ahead (0.73 warm); ResNet-50 at batch 1 1.21-1.26x
onnxruntime without, 1.15-1.16x with (alternating processes, each against onnxruntime in the same process).

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
    "max_mr",
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
    mr: int = 0


_STATE = _State()


def _host_features() -> tuple[str, str]:
    import llvmlite.binding as llvm

    name = llvm.get_host_cpu_name()
    features = llvm.get_host_cpu_features().flatten()
    return name, features


def max_mr(features: str | None = None) -> int:
    """Rows of the widest tile for the host (or for the feature string ``features``).

    With AVX-512 (32 vector registers) 13 rows: 26 accumulators, a broadcast, and the two vectors of
    ``B`` of two steps (LLVM loads the next step's ``B`` ahead of time). 14 rows (28 accumulators) left
    one register short: one accumulator spilled to the stack and came back at every step, and the
    14-row tiles ran 0.84-0.91x the 13-row tiles' GFLOP/s on ResNet-50's 1x1 layers and the MLP's
    4096-row layers (``hubkit/ops/_packed_gemm.py``; same process, one thread). Otherwise (16 registers
    of 8 floats) a 16-wide vector is two halves: 3 rows take 12 registers for accumulators and leave 4
    for ``B`` and a broadcast.
    """
    if features is None:
        features = _host_features()[1]
    return 13 if "+avx512f" in features.split(",") else 3


def _splat(name: str, scalar: str) -> list[str]:
    return [
        f"  {name}.i = insertelement <16 x float> poison, float {scalar}, i64 0",
        f"  {name} = shufflevector <16 x float> {name}.i, <16 x float> poison, <16 x i32> zeroinitializer",
    ]


UNROLL = 4
"""Steps of ``k`` per iteration of the tile's main loop."""

PF_FLOATS = 8
"""Floats of the prefetch stream per step of depth: two 64-byte lines per iteration of :data:`UNROLL` steps, a
quarter of what the tile reads of ``B`` (so four tiles fetch the next column panel of ``B`` whole)."""


def _step(emit: Any, mr: int, tag: str, bp: str, ap: str, u: int, src: dict[int, dict[int, str]]) -> None:
    """One step of depth: row ``u`` of B at ``bp`` (rows ``NR`` floats apart), column ``u`` of A at ``ap``."""
    emit(f"  %{tag}bp0 = getelementptr float, ptr {bp}, i64 {u * NR}")
    emit(f"  %{tag}bp1 = getelementptr float, ptr {bp}, i64 {u * NR + 16}")
    emit(f"  %{tag}b0 = load <16 x float>, ptr %{tag}bp0, align 64")
    emit(f"  %{tag}b1 = load <16 x float>, ptr %{tag}bp1, align 64")
    for i in range(mr):
        emit(f"  %{tag}ap{i} = getelementptr float, ptr {ap}, i64 %arow{i}")
        emit(f"  %{tag}apu{i} = getelementptr float, ptr %{tag}ap{i}, i64 {u}")
        emit(f"  %{tag}as{i} = load float, ptr %{tag}apu{i}, align 4")
        for line in _splat(f"%{tag}av{i}", f"%{tag}as{i}"):
            emit(line)
        for h in range(2):
            emit(
                f"  %{tag}acc{i}_{h} = call <16 x float> @llvm.fma.v16f32(<16 x float> %{tag}av{i}, "
                f"<16 x float> %{tag}b{h}, <16 x float> {src[i][h]})"
            )


def _phis(emit: Any, mr: int, name: str, first: tuple[str, str], second: tuple[str, str]) -> None:
    """``%<name><i>_<h> = phi`` of the tile's accumulators: from ``(value prefix, block)`` ``first`` and ``second``
    (a prefix ``zeroinitializer`` is the constant)."""
    def value(prefix: str, i: int, h: int) -> str:
        return prefix if prefix == "zeroinitializer" else f"%{prefix}{i}_{h}"

    for i in range(mr):
        for h in range(2):
            emit(
                f"  %{name}{i}_{h} = phi <16 x float> [{value(first[0], i, h)}, %{first[1]}], "
                f"[{value(second[0], i, h)}, %{second[1]}]"
            )


def _tile_function(mr: int) -> str:
    """IR of ``hk_tile_<mr>``: the tile for ``mr`` rows (see the module docstring)."""
    lines: list[str] = []
    emit = lines.append
    emit(
        f"define internal void @hk_tile_{mr}(i64 %taps, i64 %tstride, i64 %k, i64 %ai, i64 %lda, i64 %b0i, "
        "i64 %bstride, i64 %c0i, i64 %ldc, i64 %ntot, i64 %flags, i64 %bias0i, i64 %pf0i) #0 {"
    )
    emit("entry:")
    emit("  %a = inttoptr i64 %ai to ptr")
    for i in range(mr):
        emit(f"  %arow{i} = mul i64 %lda, {i}")
    # the main loop takes UNROLL steps per iteration (row p + u of B and column p + u of A at
    # constant offsets from the iteration's pointers: one increment per stream); a one-step loop
    # does the remaining k % UNROLL steps
    emit(f"  %kmain = and i64 %k, -{UNROLL}")
    emit("  %hasmain = icmp ne i64 %kmain, 0")
    emit(f"  %tbstep = mul i64 %k, {NR}")
    emit("  %bstep = mul i64 %bstride, 4")
    emit("  br label %panel")
    # the outermost loop, over the column panels of ntot columns: panel j's B (and prefetch stream) at
    # bstride floats past panel j - 1's, its 32 columns of C and of the bias at 32 floats past
    emit("panel:")
    emit("  %j = phi i64 [0, %entry], [%jn, %panelend]")
    emit("  %jb = mul i64 %j, %bstep")
    emit("  %bi = add i64 %b0i, %jb")
    emit("  %b = inttoptr i64 %bi to ptr")
    emit("  %pfi = add i64 %pf0i, %jb")
    emit("  %pf = inttoptr i64 %pfi to ptr")
    emit(f"  %jc = mul i64 %j, {NR * 4}")
    emit("  %ci = add i64 %c0i, %jc")
    emit("  %c = inttoptr i64 %ci to ptr")
    emit("  %biasi = add i64 %bias0i, %jc")
    emit("  %bias = inttoptr i64 %biasi to ptr")
    emit(f"  %j0 = mul i64 %j, {NR}")
    emit("  %left = sub i64 %ntot, %j0")
    emit(f"  %wide = icmp ugt i64 %left, {NR}")
    emit(f"  %n = select i1 %wide, i64 {NR}, i64 %left")
    # column masks for n < 32
    emit("  %n32 = trunc i64 %n to i32")
    emit("  %nins = insertelement <16 x i32> poison, i32 %n32, i64 0")
    emit("  %nsplat = shufflevector <16 x i32> %nins, <16 x i32> poison, <16 x i32> zeroinitializer")
    lo = ", ".join(f"i32 {j}" for j in range(16))
    hi = ", ".join(f"i32 {j}" for j in range(16, 32))
    emit(f"  %m0 = icmp ult <16 x i32> <{lo}>, %nsplat")
    emit(f"  %m1 = icmp ult <16 x i32> <{hi}>, %nsplat")
    emit("  br label %tap")
    # the outer loop over taps: tap t reads A at a + t * tstride (its k values of each row in place) and
    # rows t * k .. t * k + k - 1 of B; the accumulators carry over from tap to tap
    emit("tap:")
    emit("  %t = phi i64 [0, %panel], [%tn, %tapend]")
    _phis(emit, mr, "tacc", ("zeroinitializer", "panel"), ("nacc", "tapend"))
    emit("  %taoff = mul i64 %t, %tstride")
    emit("  %at = getelementptr float, ptr %a, i64 %taoff")
    emit("  %tboff = mul i64 %t, %tbstep")
    emit("  %bt = getelementptr float, ptr %b, i64 %tboff")
    emit("  %tpoff = mul i64 %t, %k")
    emit(f"  %tpoff{PF_FLOATS} = mul i64 %tpoff, {PF_FLOATS}")
    emit(f"  %pft = getelementptr float, ptr %pf, i64 %tpoff{PF_FLOATS}")
    emit("  br i1 %hasmain, label %loop, label %mid")
    emit("loop:")
    emit("  %p = phi i64 [0, %tap], [%pn, %loop]")
    _phis(emit, mr, "acc", ("tacc", "tap"), (f"u{UNROLL - 1}acc", "loop"))
    emit(f"  %boff = mul i64 %p, {NR}")
    emit("  %bpl = getelementptr float, ptr %bt, i64 %boff")
    emit("  %apl = getelementptr float, ptr %at, i64 %p")
    # two cache lines of the prefetch stream per iteration (into L2): PF_FLOATS floats per step of depth
    emit(f"  %pfoff = mul i64 %p, {PF_FLOATS}")
    emit("  %pfp0 = getelementptr float, ptr %pft, i64 %pfoff")
    emit("  %pfp1 = getelementptr float, ptr %pfp0, i64 16")
    emit("  call void @llvm.prefetch.p0(ptr %pfp0, i32 0, i32 2, i32 1)")
    emit("  call void @llvm.prefetch.p0(ptr %pfp1, i32 0, i32 2, i32 1)")
    for u in range(UNROLL):
        src = {i: {h: (f"%acc{i}_{h}" if u == 0 else f"%u{u - 1}acc{i}_{h}") for h in range(2)} for i in range(mr)}
        _step(emit, mr, f"u{u}", "%bpl", "%apl", u, src)
    emit(f"  %pn = add nuw nsw i64 %p, {UNROLL}")
    emit("  %done = icmp eq i64 %pn, %kmain")
    emit("  br i1 %done, label %mid, label %loop")
    emit("mid:")
    _phis(emit, mr, "macc", ("tacc", "tap"), (f"u{UNROLL - 1}acc", "loop"))
    emit("  %hasrest = icmp ult i64 %kmain, %k")
    emit("  br i1 %hasrest, label %rest, label %tapend")
    emit("rest:")
    emit("  %q = phi i64 [%kmain, %mid], [%qn, %rest]")
    _phis(emit, mr, "racc", ("macc", "mid"), ("r0acc", "rest"))
    emit(f"  %rboff = mul i64 %q, {NR}")
    emit("  %rbpl = getelementptr float, ptr %bt, i64 %rboff")
    emit("  %rapl = getelementptr float, ptr %at, i64 %q")
    _step(emit, mr, "r0", "%rbpl", "%rapl", 0, {i: {h: f"%racc{i}_{h}" for h in range(2)} for i in range(mr)})
    emit("  %qn = add nuw nsw i64 %q, 1")
    emit("  %rdone = icmp eq i64 %qn, %k")
    emit("  br i1 %rdone, label %tapend, label %rest")
    emit("tapend:")
    _phis(emit, mr, "nacc", ("macc", "mid"), ("r0acc", "rest"))
    emit("  %tn = add nuw nsw i64 %t, 1")
    emit("  %tdone = icmp uge i64 %tn, %taps")
    emit("  br i1 %tdone, label %epi, label %tap")
    emit("epi:")
    emit("  %full = icmp eq i64 %n, 32")
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
                    f"  %s.{label}.{i}_{h} = phi <16 x float> [{state[i][h]}, %{prev[0]}], "
                    f"[{new[i][h]}, %do.{label}]"
                )
                state[i][h] = f"%s.{label}.{i}_{h}"
        prev[0] = f"skip.{label}"

    prev = ["epi"]

    def accumulate() -> dict[int, dict[int, str]]:
        # masked loads: with all lanes set they cost what plain loads do, and no extra block
        new: dict[int, dict[int, str]] = {}
        for i in range(mr):
            emit(f"  %crow{i}.o = mul i64 %ldc, {i}")
            emit(f"  %crow{i} = getelementptr float, ptr %c, i64 %crow{i}.o")
            emit(f"  %crowh{i} = getelementptr float, ptr %crow{i}, i64 16")
            new[i] = {}
            for h in range(2):
                ptr = f"%crow{i}" if h == 0 else f"%crowh{i}"
                emit(
                    f"  %cv{i}_{h} = call <16 x float> @llvm.masked.load.v16f32.p0(ptr {ptr}, i32 4, "
                    f"<16 x i1> %m{h}, <16 x float> zeroinitializer)"
                )
                emit(f"  %ca{i}_{h} = fadd <16 x float> {state[i][h]}, %cv{i}_{h}")
                new[i][h] = f"%ca{i}_{h}"
        return new

    def bias_cols() -> dict[int, dict[int, str]]:
        emit("  %bsp1 = getelementptr float, ptr %bias, i64 16")
        emit(
            "  %bs0 = call <16 x float> @llvm.masked.load.v16f32.p0(ptr %bias, i32 4, <16 x i1> %m0, "
            "<16 x float> zeroinitializer)"
        )
        emit(
            "  %bs1 = call <16 x float> @llvm.masked.load.v16f32.p0(ptr %bsp1, i32 4, <16 x i1> %m1, "
            "<16 x float> zeroinitializer)"
        )
        new: dict[int, dict[int, str]] = {}
        for i in range(mr):
            new[i] = {}
            for h in range(2):
                emit(f"  %bc{i}_{h} = fadd <16 x float> {state[i][h]}, %bs{h}")
                new[i][h] = f"%bc{i}_{h}"
        return new

    def relu(label: str, cap: bool) -> Any:
        def body() -> dict[int, dict[int, str]]:
            # as hubkit.ops._epilogue.activate: Relu: v <= 0 -> 0 (NaN kept, -0.0 -> 0.0);
            # Relu6: v < 0 -> 0, v > 6 -> 6 (NaN and -0.0 kept)
            six = ", ".join(["float 6.0"] * 16)
            new: dict[int, dict[int, str]] = {}
            for i in range(mr):
                new[i] = {}
                for h in range(2):
                    v = state[i][h]
                    if cap:
                        emit(f"  %{label}l{i}_{h} = fcmp olt <16 x float> {v}, zeroinitializer")
                        emit(f"  %{label}g{i}_{h} = fcmp ogt <16 x float> {v}, <{six}>")
                        emit(
                            f"  %{label}a{i}_{h} = select <16 x i1> %{label}g{i}_{h}, <16 x float> <{six}>, "
                            f"<16 x float> {v}"
                        )
                        emit(
                            f"  %{label}v{i}_{h} = select <16 x i1> %{label}l{i}_{h}, <16 x float> "
                            f"zeroinitializer, <16 x float> %{label}a{i}_{h}"
                        )
                    else:
                        emit(f"  %{label}l{i}_{h} = fcmp ole <16 x float> {v}, zeroinitializer")
                        emit(
                            f"  %{label}v{i}_{h} = select <16 x i1> %{label}l{i}_{h}, <16 x float> "
                            f"zeroinitializer, <16 x float> {v}"
                        )
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
        emit(f"  %srowh{i} = getelementptr float, ptr %srow{i}, i64 16")
        emit(f"  store <16 x float> {state[i][0]}, ptr %srow{i}, align 4")
        emit(f"  store <16 x float> {state[i][1]}, ptr %srowh{i}, align 4")
    emit("  br label %panelend")
    emit("storem:")
    for i in range(mr):
        emit(f"  %smrow{i}.o = mul i64 %ldc, {i}")
        emit(f"  %smrow{i} = getelementptr float, ptr %c, i64 %smrow{i}.o")
        emit(f"  %smrowh{i} = getelementptr float, ptr %smrow{i}, i64 16")
        emit(
            f"  call void @llvm.masked.store.v16f32.p0(<16 x float> {state[i][0]}, ptr %smrow{i}, i32 4, "
            "<16 x i1> %m0)"
        )
        emit(
            f"  call void @llvm.masked.store.v16f32.p0(<16 x float> {state[i][1]}, ptr %smrowh{i}, i32 4, "
            "<16 x i1> %m1)"
        )
    emit("  br label %panelend")
    emit("panelend:")
    emit("  %jn = add nuw nsw i64 %j, 1")
    emit(f"  %jnext = mul i64 %jn, {NR}")
    emit("  %more = icmp ult i64 %jnext, %ntot")
    emit("  br i1 %more, label %panel, label %out")
    emit("out:")
    emit("  ret void")
    emit("}")
    return "\n".join(lines)


def _entry(mr_max: int, name: str, params: str, args: str) -> str:
    """IR of the entry ``name(mr, *params)``: calls ``hk_tile_<mr>`` with ``args`` (names of params, or numbers)."""

    def value(a: str) -> str:
        return f"i64 {a}" if a.isdigit() else f"i64 %{a}"

    lines = [
        f"define void @{name}(i64 %mr, {', '.join(f'i64 %{p}' for p in params.split())}) #0 {{",
        "entry:",
        f"  switch i64 %mr, label %done [{' '.join(f'i64 {mr}, label %t{mr}' for mr in range(1, mr_max + 1))}]",
    ]
    for mr in range(1, mr_max + 1):
        lines += [f"t{mr}:", f"  call void @hk_tile_{mr}({', '.join(value(a) for a in args.split())})", "  ret void"]
    lines += ["done:", "  ret void", "}"]
    return "\n".join(lines)


def kernel_ir(mr_max: int) -> str:
    """The module's IR text: ``hk_tile_1`` .. ``hk_tile_<mr_max>`` and the entries ``hk_sgemm_tile`` and
    ``hk_sconv_tile``."""
    parts = [
        "declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)",
        "declare <16 x float> @llvm.masked.load.v16f32.p0(ptr, i32 immarg, <16 x i1>, <16 x float>)",
        "declare void @llvm.masked.store.v16f32.p0(<16 x float>, ptr, i32 immarg, <16 x i1>)",
        "declare void @llvm.prefetch.p0(ptr, i32 immarg, i32 immarg, i32 immarg)",
    ]
    for mr in range(1, mr_max + 1):
        parts.append(_tile_function(mr))
    # the entries: hk_sgemm_tile (one run of A, no prefetch: its own B) and hk_sconv_tile (every argument)
    parts.append(_entry(mr_max, "hk_sgemm_tile", "k a lda b ldb c ldc n flags bias", "1 0 k a lda b ldb c ldc n flags bias b"))
    parts.append(_entry(mr_max, "hk_sconv_tile", "taps tstride k a lda b bstride c ldc n flags bias pf",
                        "taps tstride k a lda b bstride c ldc n flags bias pf"))
    parts.append('attributes #0 = { nounwind "min-legal-vector-width"="512" "prefer-vector-width"="512" }')
    return "\n\n".join(parts) + "\n"


def _init_llvm() -> None:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@contextlib.contextmanager
def _no_machine_scheduler() -> Iterator[None]:
    """LLVM's machine scheduler off while the tiles compile (a process-wide LLVM option, restored after).

    With it on, the unrolled loop's broadcasts are hoisted ahead of their FMAs and spilled (82 stack
    accesses per iteration of the 13-row tile); with it off the IR's order is kept (4).
    """
    import llvmlite.binding as llvm

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
    key = hashlib.sha256("\0".join([ir, name, features, llvmlite.__version__]).encode()).hexdigest()[:32]
    return os.path.join(root, "hubkit_gemm", f"tile_{key}.o")


def _build() -> None:

    import llvmlite.binding as llvm

    name, features = _host_features()
    mr = max_mr(features)
    _init_llvm()
    ir = kernel_ir(mr)
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
    with _no_machine_scheduler():
        engine.finalize_object()
    _STATE.engine = engine  # keeps the machine code alive for the process
    _STATE.mr = mr
    _STATE.conv_address = engine.get_function_address("hk_sconv_tile")
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


def assembly() -> str:
    """The host's machine code of the kernels (for inspection)."""
    import llvmlite.binding as llvm

    _init_llvm()
    name, features = _host_features()
    mod = llvm.parse_assembly(kernel_ir(max_mr(features)))
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=name, features=features, opt=3)
    with _no_machine_scheduler():
        return str(tm.emit_assembly(mod))
