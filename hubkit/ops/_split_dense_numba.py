"""Numba side of the split dense layer (:mod:`hubkit.ops._split_dense`): the call into the native split,
then the sum of the two partial rows with the bias and the activation.

Imported only when a split layer runs (it imports numba).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from hubkit.ops._epilogue import activate

__all__ = ["call_split", "split_dense_kernel"]


@intrinsic
def call_split(typingctx, addr, run, ctl, tile, rows, kc, kw, a, lda, bc, bw, cc, cw, ldc, n, spin):  # type: ignore[no-untyped-def]
    """Calls ``hk_split_gemv`` at the address ``addr`` (every argument an integer) and returns its int64."""
    sig = types.int64(addr, run, ctl, tile, rows, kc, kw, a, lda, bc, bw, cc, cw, ldc, n, spin)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64] * 15)
        vals = [context.cast(builder, v, t, types.int64) for v, t in zip(args, signature.args, strict=True)]
        fn = builder.inttoptr(vals[0], fnty.as_pointer())
        return builder.call(fn, vals[1:])

    return sig, codegen


def split_dense_kernel(addr, run, ctl, tile, spin, x, kc, packed_c, packed_w, out, part, bias, act):  # pragma: no cover - compiled by Numba
    """``out = act(x[:, :kc] @ w[:kc] + x[:, kc:] @ w[kc:] + bias)``, the halves on two threads.

    ``packed_c`` and ``packed_w`` are ``pack_weights`` of ``w[:kc]`` and ``w[kc:]``; ``x``, ``out``
    and ``part`` are C-contiguous float32 (``part`` receives the worker's half). ``bias`` may be
    empty. Returns 1 when the worker ran its half, 0 when this thread ran both.
    """
    rows, depth = x.shape
    n = out.shape[1]
    worker = call_split(
        addr, run, ctl, tile, rows, kc, depth - kc, x.ctypes.data, depth, packed_c.ctypes.data,
        packed_w.ctypes.data, out.ctypes.data, part.ctypes.data, n, n, spin,
    )
    has_bias = bias.shape[0] > 0
    for i in range(rows):
        o = out[i]
        p = part[i]
        for j in range(n):
            v = o[j] + p[j]
            o[j] = activate(v + bias[j] if has_bias else v, act)
    return worker
