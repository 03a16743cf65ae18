"""A channel concatenation of convolutions of one NHWC input, prepared for one input shape on two threads: every
part's halves in one job on the pool's worker (:mod:`hubkit.ops._worker_pool`).

A fire module of SqueezeNet concatenates a 1x1 and a 3x3 convolution of the same input. Run part by part, each is a
prepared call (:mod:`hubkit.ops.conv_nhwc_call`) with its own checks, its own job block filled by a Numba dispatch
and its own hand-off to the worker: at one image on two threads such a step spent 48-64 us outside its kernels
(36 us with every kernel a no-op), against 300-450 us of kernels. :func:`prepare` fills both halves' argument blocks
of every part once, each part in the tap form (:mod:`hubkit.ops._conv_taps`: a 1x1 convolution is a tap
convolution of one tap); a call then checks its arguments, pads the input once for the parts that pad, writes the
call's three addresses into a copy of the blocks (one dispatch, :func:`~hubkit.ops._conv_taps_kernel.parts_patch`)
and hands both halves of every part to the worker at once (:func:`~hubkit.ops._conv_taps_kernel.parts_job`).

A lone convolution (no residual, no output slice) is such a job of one part: the plan's NHWC convolution step
(:class:`~hubkit.runtime.optimize_layout.NhwcConv`) prepares one beside its prepared call on two threads.

Each part is split as the tap form splits it alone (its tiles, or its column panels), and each output is computed by
the same tile kernel over the same depth in the same order as by the part's own prepared call, so the result is the
same bits (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.ops import _conv_taps, _numba, _packed_gemm, _worker_pool, conv_nhwc_call
from hubkit.ops.conv_nchw import _scratch, outputs
from hubkit.ops.conv_nhwc_call import NhwcCall

__all__ = ["ConcatCall", "prepare"]

_F32 = np.dtype(np.float32)


class ConcatCall:
    """The concatenation along channels of ``calls``' results for one input of ``shape`` (see the module
    docstring). Calling it with the concatenation step's arguments (``x, filters`` per part) returns the new
    ``(N, OH, OW, sum of M)`` array, or None (nothing written) when this call is not the one it was prepared for:
    another input, filters or thread count, or the worker busy with another thread's call."""

    __slots__ = ("_blocks", "_job", "_keep", "_kernels", "_kinds", "_pad", "out_shape", "preps", "shape")

    def __init__(self, shape: tuple[int, ...], preps: tuple[Any, ...], out_shape: tuple[int, ...],
                 blocks: np.ndarray, kinds: np.ndarray, pad: tuple[int, int, int, int] | None,
                 keep: tuple[np.ndarray, ...], kernels: tuple[Any, Any], job: int) -> None:
        self.shape = shape
        self.preps = preps  # the parts' PreparedConv, which the step's arguments must be
        self.out_shape = out_shape
        self._blocks = blocks
        self._kinds = kinds
        self._pad = pad
        self._keep = keep  # the packed filters and biases whose addresses the blocks hold: alive while they are
        self._kernels = kernels  # (the compiled pad, parts_patch)
        self._job = job  # parts_job's address

    def __call__(self, args: Sequence[Any]) -> np.ndarray | None:
        x = args[0]
        preps = self.preps
        if (
            len(args) != 2 * len(preps) or type(x) is not np.ndarray or x.shape != self.shape or x.dtype != _F32
            or not x.flags.c_contiguous or conv_nhwc_call.mode() != 2
        ):
            return None
        for i, prep in enumerate(preps):
            if args[2 * i] is not x or args[2 * i + 1] is not prep:
                return None
        pad, patch = self._kernels
        xp = x
        if self._pad is not None:
            top, left, hp, wp = self._pad
            n, _, _, c = self.shape
            size = n * hp * wp * c
            xp = _scratch.get("nhwc_pad", size, _F32)[:size].reshape(n, hp, wp, c)
            pad(x, top, left, xp)
        out = outputs.empty(self.out_shape, _F32)
        blocks = self._blocks.copy()  # this call's own: another thread may run the same step meanwhile
        addr = patch(blocks, self._kinds, x, xp, out)
        return out if _worker_pool.run_halves(self._job, addr, blocks.strides[0]) else None


def prepare(shape: tuple[int, ...], calls: Sequence[NhwcCall | None]) -> ConcatCall | None:
    """The concatenation of ``calls``' results (each prepared for inputs of ``shape``) as one job, or None when it
    does not apply: no part, a part not prepared or not split over the worker, parts whose outputs
    differ in size or that pad differently, a 1x1 part whose own call sums its depth in blocks (the tap form sums
    it in one pass: other bits) or keeps it on one thread (too few rows to pay for the worker), too few tiles, or no
    worker or compiled job here."""
    if not calls or any(call is None for call in calls):
        return None
    pad_kernel = _conv_taps.pad_kernel()
    if pad_kernel is None:
        return None
    from hubkit.ops import _conv_taps_kernel

    patch = _numba.kernel(_conv_taps_kernel.parts_patch)
    job = _numba.job(_conv_taps_kernel.parts_job) if patch is not None else 0
    if not job:
        return None
    n, h, w, c = shape
    mr = _packed_gemm._STATE.mr
    total = sum(call.out_shape[3] for call in calls)  # type: ignore[union-attr]
    parts = []
    kinds = np.zeros((len(calls), 2), np.int64)
    pad: tuple[int, int, int, int] | None = None
    c0 = 0
    for p, call in enumerate(calls):
        assert call is not None
        kh, kw, sh, sw, dh, top, left, oh, ow = call._args
        m = call.out_shape[3]
        if (
            call.shape != shape or call.tile != 2 or call.out_shape[:3] != calls[0].out_shape[:3]  # type: ignore[union-attr]
            or not _conv_taps.fits(c, (kh, kw), sw) or n * -(-(oh * ow) // mr) < 2
            or (call.pointwise and (call.kc_mc[0] < c or not call._split))
        ):
            return None
        hp, wp = _conv_taps.reach(kh, kw, sh, sw, dh, oh, ow)
        padded = _conv_taps.pads(h, w, top, left, hp, wp)
        if padded:
            if pad is not None and pad != (top, left, hp, wp):
                return None
            pad = (top, left, hp, wp)
        src = np.empty((n, hp, wp, c) if padded else shape, _F32)  # its shape only: the address is each call's
        rows = np.empty((n * oh * ow, total), _F32)[:, c0 : c0 + m]  # the output's rows, its address each call's too
        made = _conv_taps.split_blocks(src, kh, kw, sh, sw, dh, oh, ow, call.packed, rows, call._bias, call._flags)
        if made is None:
            return None  # no worker or job here, or filters not 64-byte aligned
        parts.append(made[0])
        kinds[p] = (1 if padded else 0, c0 * 4)
        c0 += m
    blocks = np.concatenate([np.full((2, 1), len(calls), np.int64), *parts], axis=1)  # parts_job's count, then each part's
    out_shape = (*calls[0].out_shape[:3], total)  # type: ignore[union-attr]
    keep = tuple(a for call in calls for a in (call.packed, call._bias))  # type: ignore[union-attr]
    return ConcatCall(shape, tuple(call.prep for call in calls), out_shape, blocks, kinds, pad, keep,  # type: ignore[union-attr]
                      (pad_kernel, patch), job)
