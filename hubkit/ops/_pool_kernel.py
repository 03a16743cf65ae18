"""The float32 NHWC max pool as LLVM IR: each window's taps as whole vectors of channels, the maximum in registers.

Numba's loop over a window's taps (:func:`hubkit.ops.pool_nhwc.max_pool_nhwc_kernel`) did not vectorise:
SqueezeNet's first pool (111x111x64, 3x3, stride 2) took 851 us alone, nine ``np.maximum`` passes over strided
views 535 us, and four other Numba forms 960-1860 us (docs/performance_notes.md, tenth session). Here each
output pixel's channels go a vector at a time (the tile kernel's width, :func:`hubkit.ops._gemm_kernel.lanes`;
the last vector masked), each vector's maximum over the window's taps kept in a register.

The maximum is the Numba kernel's, value for value: starting from ``-inf``, a tap ``v`` replaces the running
``a`` unless ``a >= v`` or ``a`` is NaN (so the first NaN wins and stays; a window all in padding gives
``-inf``). That rule costs a compare, a NaN test, an ``or`` and a select per tap; the kernel runs each window
with one ``maxps`` per tap instead (``v > a``: the same result without NaNs) beside a running sum of the taps,
and takes a window again by the rule when its sum is NaN (:func:`_vector`). SqueezeNet's three pools at one
image, one thread, same process: 41.6 / 71.6 / 136 -> 36.8 / 63.0 / 124 us. Entry (all ``i64``; ``x`` and ``out`` addresses of C-contiguous float32 arrays)::

    hk_maxpool_f32(x, h, w, c, kh, kw, sh, sw, dh, dw, top, left, oh, ow, out, row0, row1)

computes output rows ``row0 .. row1 - 1`` of the ``(N * OH)`` rows of ``out`` (``(N, OH, OW, C)``) from ``x``
(``(N, H, W, C)``); the caller checks the geometry. ``hk_maxpool_job(args)`` is the same call on a block of
those :data:`JOB_ARGS` words (a job for :mod:`hubkit.ops._worker_pool`). Both are compiled with the tile kernels
(one module, one cache: :mod:`hubkit.ops._gemm_kernel`).
"""

from __future__ import annotations

__all__ = ["GROUP", "JOB_ARGS", "pool_ir"]

GROUP = 4
"""Channel vectors whose maxima run side by side (the rest go one at a time, the last partial one masked)."""

JOB_ARGS = 17
"""int64 words of ``hk_maxpool_job``'s argument block: ``hk_maxpool_f32``'s arguments, in order."""


def _clip(emit, name: str, start: str, size: str, step: str, taps: str) -> None:
    """``%<name>0`` and ``%<name>1``: the taps ``[0, taps)`` whose ``start + t * step`` lies in ``[0, size)``."""
    emit(f"  %{name}neg = sub i64 0, {start}")
    emit(f"  %{name}negp = icmp sgt i64 %{name}neg, 0")
    emit(f"  %{name}negc = add i64 %{name}neg, {step}")
    emit(f"  %{name}negc1 = sub i64 %{name}negc, 1")
    emit(f"  %{name}q = sdiv i64 %{name}negc1, {step}")
    emit(f"  %{name}0 = select i1 %{name}negp, i64 %{name}q, i64 0")
    emit(f"  %{name}room = sub i64 {size}, {start}")
    emit(f"  %{name}roomp = icmp sgt i64 %{name}room, 0")
    emit(f"  %{name}roomm = sub i64 %{name}room, 1")
    emit(f"  %{name}last = sdiv i64 %{name}roomm, {step}")
    emit(f"  %{name}end = add i64 %{name}last, 1")
    emit(f"  %{name}lt = icmp slt i64 %{name}end, {taps}")
    emit(f"  %{name}min = select i1 %{name}lt, i64 %{name}end, i64 {taps}")
    emit(f"  %{name}1 = select i1 %{name}roomp, i64 %{name}min, i64 0")


def _vector(emit, lanes: int, tag: str, masked: bool, after: str, count: int = 1, exact: bool = True) -> None:
    """The maximum over the window of ``count`` channel vectors from ``%k0`` (``masked``: the last, partial one,
    alone), stored; then a branch to ``after``. Each vector has its own running maximum, and ``count`` chains
    run side by side.

    ``exact``: each tap's compare and select keep the rule of the module docstring (~5 cycles a tap).
    Otherwise a tap replaces the running maximum when it is greater (one ``maxps``), the same result when the
    window holds no NaN, and a running sum of the taps finds one: a window whose sum is NaN (a NaN tap, or
    infinities of both signs) is taken again the exact way before anything is stored."""
    vt = f"<{lanes} x float>"
    ninf = f"<{', '.join(['float 0xFFF0000000000000'] * lanes)}>"
    vs = range(count)
    emit(f"  br i1 %rany, label %{tag}r, label %{tag}store")
    emit(f"{tag}r:")
    emit(f"  %{tag}ri = phi i64 [%r0, %{tag}], [%{tag}rn, %{tag}tend]")
    for v in vs:
        emit(f"  %{tag}racc{v} = phi {vt} [{ninf}, %{tag}], [%{tag}tout{v}, %{tag}tend]")
        if not exact:
            emit(f"  %{tag}rsum{v} = phi {vt} [zeroinitializer, %{tag}], [%{tag}sout{v}, %{tag}tend]")
    emit(f"  %{tag}roff = mul i64 %{tag}ri, %rstep")
    emit(f"  %{tag}rbase = add i64 %pxbase, %{tag}roff")
    emit(f"  br label %{tag}t")
    emit(f"{tag}t:")
    emit(f"  %{tag}ti = phi i64 [%t0, %{tag}r], [%{tag}tn, %{tag}t]")
    for v in vs:
        emit(f"  %{tag}acc{v} = phi {vt} [%{tag}racc{v}, %{tag}r], [%{tag}new{v}, %{tag}t]")
        if not exact:
            emit(f"  %{tag}sum{v} = phi {vt} [%{tag}rsum{v}, %{tag}r], [%{tag}snew{v}, %{tag}t]")
    emit(f"  %{tag}toff = mul i64 %{tag}ti, %tstep")
    emit(f"  %{tag}off0 = add i64 %{tag}rbase, %{tag}toff")
    emit(f"  %{tag}off = add i64 %{tag}off0, %k0")
    emit(f"  %{tag}p = getelementptr float, ptr %x, i64 %{tag}off")
    for v in vs:
        emit(f"  %{tag}p{v} = getelementptr float, ptr %{tag}p, i64 {v * lanes}")
        if masked:
            emit(f"  %{tag}v{v} = call {vt} @llvm.masked.load.v{lanes}f32.p0(ptr %{tag}p{v}, i32 4, <{lanes} x i1> "
                 f"%tmask, {vt} zeroinitializer)")
        else:
            emit(f"  %{tag}v{v} = load {vt}, ptr %{tag}p{v}, align 4")
        if exact:
            emit(f"  %{tag}ge{v} = fcmp oge {vt} %{tag}acc{v}, %{tag}v{v}")
            emit(f"  %{tag}nan{v} = fcmp uno {vt} %{tag}acc{v}, %{tag}acc{v}")
            emit(f"  %{tag}keep{v} = or <{lanes} x i1> %{tag}ge{v}, %{tag}nan{v}")
            emit(f"  %{tag}new{v} = select <{lanes} x i1> %{tag}keep{v}, {vt} %{tag}acc{v}, {vt} %{tag}v{v}")
        else:
            emit(f"  %{tag}gt{v} = fcmp ogt {vt} %{tag}v{v}, %{tag}acc{v}")
            emit(f"  %{tag}new{v} = select <{lanes} x i1> %{tag}gt{v}, {vt} %{tag}v{v}, {vt} %{tag}acc{v}")
            emit(f"  %{tag}snew{v} = fadd {vt} %{tag}sum{v}, %{tag}v{v}")
    emit(f"  %{tag}tn = add nuw nsw i64 %{tag}ti, 1")
    emit(f"  %{tag}tdone = icmp sge i64 %{tag}tn, %t1")
    emit(f"  br i1 %{tag}tdone, label %{tag}tend, label %{tag}t")
    emit(f"{tag}tend:")
    for v in vs:
        emit(f"  %{tag}tout{v} = phi {vt} [%{tag}new{v}, %{tag}t]")
        if not exact:
            emit(f"  %{tag}sout{v} = phi {vt} [%{tag}snew{v}, %{tag}t]")
    emit(f"  %{tag}rn = add nuw nsw i64 %{tag}ri, 1")
    emit(f"  %{tag}rdone = icmp sge i64 %{tag}rn, %r1")
    emit(f"  br i1 %{tag}rdone, label %{tag}store, label %{tag}r")
    emit(f"{tag}store:")
    for v in vs:
        emit(f"  %{tag}res{v} = phi {vt} [{ninf}, %{tag}], [%{tag}tout{v}, %{tag}tend]")
    if not exact:  # a NaN sum: the window again, the exact way
        for v in vs:
            emit(f"  %{tag}sres{v} = phi {vt} [zeroinitializer, %{tag}], [%{tag}sout{v}, %{tag}tend]")
        for v in vs:
            emit(f"  %{tag}suno{v} = fcmp uno {vt} %{tag}sres{v}, %{tag}sres{v}")
        emit(f"  %{tag}sany0 = bitcast <{lanes} x i1> %{tag}suno0 to i{lanes}")
        for v in range(1, count):
            emit(f"  %{tag}sbits{v} = bitcast <{lanes} x i1> %{tag}suno{v} to i{lanes}")
            emit(f"  %{tag}sany{v} = or i{lanes} %{tag}sany{v - 1}, %{tag}sbits{v}")
        emit(f"  %{tag}hasnan = icmp ne i{lanes} %{tag}sany{count - 1}, 0")
        emit(f"  br i1 %{tag}hasnan, label %{tag}x, label %{tag}put")
        emit(f"{tag}x:")
        _vector(emit, lanes, f"{tag}x", masked, after, count)
        emit(f"{tag}put:")
    emit(f"  %{tag}oo = add i64 %pxout, %k0")
    emit(f"  %{tag}op = getelementptr float, ptr %o, i64 %{tag}oo")
    for v in vs:
        emit(f"  %{tag}op{v} = getelementptr float, ptr %{tag}op, i64 {v * lanes}")
        if masked:
            emit(f"  call void @llvm.masked.store.v{lanes}f32.p0({vt} %{tag}res{v}, ptr %{tag}op{v}, i32 4, "
                 f"<{lanes} x i1> %tmask)")
        else:
            emit(f"  store {vt} %{tag}res{v}, ptr %{tag}op{v}, align 4")
    emit(f"  br label %{after}")


def pool_ir(lanes: int) -> str:
    """IR of ``hk_maxpool_f32`` on ``lanes``-wide vectors (the module docstring); the masked load and store
    intrinsics are declared by the tile kernels' module."""
    lines: list[str] = []
    emit = lines.append
    emit(
        "define void @hk_maxpool_f32(i64 %xi, i64 %h, i64 %w, i64 %c, i64 %kh, i64 %kw, i64 %sh, i64 %sw, i64 %dh, "
        "i64 %dw, i64 %top, i64 %left, i64 %oh, i64 %ow, i64 %oi, i64 %row0, i64 %row1) #0 {"
    )
    emit("entry:")
    emit("  %x = inttoptr i64 %xi to ptr")
    emit("  %o = inttoptr i64 %oi to ptr")
    emit("  %wc = mul i64 %w, %c")
    emit("  %hwc = mul i64 %h, %wc")
    emit("  %owc = mul i64 %ow, %c")
    emit("  %rstep = mul i64 %dh, %wc")
    emit("  %tstep = mul i64 %dw, %c")
    emit(f"  %cfull = and i64 %c, -{lanes}")
    emit("  %rem = sub i64 %c, %cfull")
    emit("  %hastail = icmp ne i64 %rem, 0")
    emit(f"  %cquad = and i64 %c, -{GROUP * lanes}")
    emit("  %hasquad = icmp ne i64 %cquad, 0")
    emit("  %rem32 = trunc i64 %rem to i32")
    emit(f"  %remi = insertelement <{lanes} x i32> poison, i32 %rem32, i64 0")
    emit(f"  %rems = shufflevector <{lanes} x i32> %remi, <{lanes} x i32> poison, <{lanes} x i32> zeroinitializer")
    emit(f"  %tmask = icmp ult <{lanes} x i32> <{', '.join(f'i32 {j}' for j in range(lanes))}>, %rems")
    emit("  %any = icmp slt i64 %row0, %row1")
    emit("  %anyox = icmp sgt i64 %ow, 0")
    emit("  %go = and i1 %any, %anyox")
    emit("  br i1 %go, label %row, label %done")
    emit("row:")
    emit("  %rr = phi i64 [%row0, %entry], [%rrn, %rowend]")
    emit("  %img = udiv i64 %rr, %oh")
    emit("  %oy = urem i64 %rr, %oh")
    emit("  %iys = mul i64 %oy, %sh")
    emit("  %iy0 = sub i64 %iys, %top")
    _clip(emit, "r", "%iy0", "%h", "%dh", "%kh")
    emit("  %imgoff = mul i64 %img, %hwc")
    emit("  %iy0off = mul i64 %iy0, %wc")
    emit("  %rowbase = add i64 %imgoff, %iy0off")  # (may point before the image: only rows r >= r0 are read)
    emit("  %rrout = mul i64 %rr, %owc")
    emit("  br label %px")
    emit("px:")
    emit("  %ox = phi i64 [0, %row], [%oxn, %pxend]")
    emit("  %ixs = mul i64 %ox, %sw")
    emit("  %ix0 = sub i64 %ixs, %left")
    _clip(emit, "t", "%ix0", "%w", "%dw", "%kw")
    emit("  %rnz = icmp slt i64 %r0, %r1")
    emit("  %tnz = icmp slt i64 %t0, %t1")
    emit("  %rany = and i1 %rnz, %tnz")
    emit("  %ix0off = mul i64 %ix0, %c")
    emit("  %pxbase = add i64 %rowbase, %ix0off")
    emit("  %oxoff = mul i64 %ox, %c")
    emit("  %pxout = add i64 %rrout, %oxoff")
    emit("  br i1 %hasquad, label %kq, label %kvcheck")
    emit("kq:")  # GROUP vectors of channels at a time, each its own chain (the remainder one at a time)
    group: list[str] = ["  %q0 = phi i64 [0, %px], [%q0n, %kqnext]"]
    _vector(group.append, lanes, "kq", False, "kqnext", GROUP, exact=False)
    lines.extend(line.replace("%k0", "%q0") for line in group)
    emit("kqnext:")
    emit(f"  %q0n = add nuw nsw i64 %q0, {GROUP * lanes}")
    emit("  %kqdone = icmp uge i64 %q0n, %cquad")
    emit("  br i1 %kqdone, label %kvcheck, label %kq")
    emit("kvcheck:")
    emit("  %hasone = icmp ult i64 %cquad, %cfull")
    emit("  br i1 %hasone, label %kv, label %ktail")
    emit("kv:")
    emit("  %k0 = phi i64 [%cquad, %kvcheck], [%k0n, %kvnext]")
    _vector(emit, lanes, "kv", False, "kvnext", exact=False)
    emit("kvnext:")
    emit(f"  %k0n = add nuw nsw i64 %k0, {lanes}")
    emit("  %kvdone = icmp uge i64 %k0n, %cfull")
    emit("  br i1 %kvdone, label %ktail, label %kv")
    emit("ktail:")
    emit("  br i1 %hastail, label %kt, label %pxend")
    emit("kt:")
    # the last, partial vector: %k0 is redefined in its own block for the shared body
    body: list[str] = []
    _vector(body.append, lanes, "kt", True, "pxend", exact=False)
    lines.extend(line.replace("%k0", "%cfull") for line in body)
    emit("pxend:")
    emit("  %oxn = add nuw nsw i64 %ox, 1")
    emit("  %oxdone = icmp sge i64 %oxn, %ow")
    emit("  br i1 %oxdone, label %rowend, label %px")
    emit("rowend:")
    emit("  %rrn = add nuw nsw i64 %rr, 1")
    emit("  %rrdone = icmp sge i64 %rrn, %row1")
    emit("  br i1 %rrdone, label %done, label %row")
    emit("done:")
    emit("  ret void")
    emit("}")
    # the same on a block of its 17 arguments: a job for the worker thread (hubkit/ops/_worker_pool.py)
    emit("define void @hk_maxpool_job(ptr %args) {")
    emit("entry:")
    names = []
    for i in range(JOB_ARGS):
        emit(f"  %p{i} = getelementptr inbounds i64, ptr %args, i64 {i}")
        emit(f"  %a{i} = load i64, ptr %p{i}, align 8")
        names.append(f"i64 %a{i}")
    emit(f"  call void @hk_maxpool_f32({', '.join(names)})")
    emit("  ret void")
    emit("}")
    return "\n".join(lines)
