"""Channels-last regions for imported ONNX CNNs: the layout changes once at a region's edges, not per op.

ONNX lays images out channels-first (NCHW). There a convolution is ``W @ columns`` per image, and
hubkit's pixel-major tile GEMM needs a transposed copy on both sides of it. Channels-last (NHWC), a
convolution is directly ``columns[pixels, taps * C] @ W``: a 1x1 stride-1 convolution multiplies the
activations in place, the product is already the next layer's input, and a channel ``Concat`` is a
set of column slices that each convolution writes into.

Called by :func:`hubkit.runtime.optimize.optimize_plan` after the convolution and pool rewrites, this
pass finds the connected groups of steps that have an NHWC form (fused ONNX convolutions, channel
concatenations of them, 2-D max and average pools, per-channel affine chains, and a spatial ``Mean``,
which leaves the region with its ``(N, C, 1, 1)`` result), and keeps each group of at least
:data:`REGION_MIN_CONVS` convolutions channels-last: a ``ToNHWC`` step converts each value that flows in,
a ``ToNCHW`` step each value read outside the group or fetched. Every other reader sees the NCHW value
it saw before. The NHWC kernels are :mod:`hubkit.ops.conv_nhwc` and :mod:`hubkit.ops.pool_nhwc`.

Results equal the NCHW plan's within the convolutions' stated tolerance (summation order; pools,
concatenations, affines and conversions are exact, the spatial mean differs by summation order).
``HUBKIT_OPTIMIZE_LAYOUT=0`` leaves plans channels-first (to measure the rewrite in one process).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hubkit.ops import _packed_gemm, conv_nhwc, conv_nhwc_call, conv_nhwc_concat, pool_nhwc
from hubkit.ops._epilogue import bias_act_
from hubkit.ops._helpers import normalize_axes
from hubkit.ops.conv_nchw import PreparedConv, outputs
from hubkit.ops.onnx_conv import check_window_sizes, window_geometry
from hubkit.runtime.optimize_conv import ChannelAffine, ConcatConvs, FusedOnnxConv, concat_parts
from hubkit.runtime.optimize_pool import PoolStep

__all__ = ["REGION_MIN_CONVS", "rewrite_layout_plan"]

REGION_MIN_CONVS = 2
"""Fewest convolutions a channels-last region holds: a lone convolution would pay two conversions."""


def _enabled() -> bool:
    return os.environ.get("HUBKIT_OPTIMIZE_LAYOUT", "1").strip().lower() not in ("0", "false", "no", "off")


def _four_d(x: Any, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        shape = getattr(x, "shape", None)
        raise ValueError(f"{what} needs a 4-D array, got {type(x).__name__} of shape {shape}.")
    return x


class ToNhwc:
    """``(N, C, H, W)`` to a new C-contiguous ``(N, H, W, C)`` copy: a value entering a channels-last region."""

    label = "ToNHWC"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return conv_nhwc.to_nhwc(_four_d(x, "ToNHWC"))

    def __repr__(self) -> str:
        return "ToNhwc()"


class ToNchw:
    """``(N, H, W, C)`` to a new C-contiguous ``(N, C, H, W)`` copy: a region's value read outside it."""

    label = "ToNCHW"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _four_d(x, "ToNCHW")
        n, h, w, c = x.shape
        out = outputs.empty((n, c, h, w), x.dtype)
        np.copyto(out, x.transpose(0, 3, 1, 2))
        return out

    def __repr__(self) -> str:
        return "ToNchw()"


class NhwcConv:
    """A fused ONNX convolution (:class:`~hubkit.runtime.optimize_conv.FusedOnnxConv`) on NHWC values."""

    __slots__ = ("_fast", "_last", "act", "attrs", "donate", "label", "nodes")

    def __init__(self, conv: FusedOnnxConv) -> None:
        self.nodes = conv.nodes
        self.attrs = conv.attrs
        self.act = conv.act
        self.donate = False  # the residual's array is read by nothing else: the output may take its memory
        self._last: tuple = ((), None)  # (input shape, filter shape), geometry of the last call: checked once
        # ((input shape, filters, thread mode), the call prepared for them or None, and on two threads its one-part
        # job (hubkit/ops/conv_nhwc_concat.py), False until first needed, or None): calls without a residual
        self._fast: tuple = ((), None, None)
        self.label = conv.label + " (NHWC)"

    def _geometry(self, x: np.ndarray, prep: PreparedConv) -> tuple[Any, Any, Any, Any, Any]:
        key = (_four_d(x, "a 2-D convolution").shape, prep.w2.shape, prep.kernel)
        last = self._last  # one read: another thread may replace it meanwhile
        if last[0] == key:
            return last[1]
        geometry = self._check_geometry(x, prep)
        self._last = (key, geometry)
        return geometry

    def _check_geometry(self, x: np.ndarray, prep: PreparedConv) -> tuple[Any, Any, Any, Any, Any]:
        a = self.attrs
        n, h, w, c = x.shape
        out_hw, begin, end = window_geometry(
            (h, w), prep.kernel, a["strides"], a["dilations"], a["pads"], a.get("auto_pad", "NOTSET")
        )
        check_window_sizes((n, c, h, w), out_hw, begin, end, prep.w2.shape[0], prep.w2.shape[1] // max(1, c))
        return tuple(a["strides"]), tuple(a["dilations"]), begin, end, out_hw

    def result_shape(self, x: np.ndarray, prep: PreparedConv) -> tuple[int, ...] | None:
        """The ``(N, OH, OW, M)`` output's shape for input ``x`` (None when ``x`` is not 4-D)."""
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            return None
        out_hw = self._geometry(x, prep)[4]
        return (x.shape[0], *out_hw, prep.w2.shape[0])

    def __call__(
        self, x: np.ndarray, prep: PreparedConv, res: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The fused chain's NHWC value; written into ``out`` (a channel slice of a concatenation) when given."""
        # the prepared call: without a residual, or adding it in place when the output may take its memory
        prepared = res is None or (self.donate and out is None)
        if prepared:
            _, fast, job = self._fast
            if job is not None and res is None and out is None:  # alone on two threads: one prepared job
                if job is False:
                    job = self._prepare_job(fast)
                if job is not None:
                    y = job((x, prep))
                    if y is not None:
                        return y
            if fast is not None and fast.prep is prep:
                y = fast(x, out, False) if res is None else fast(x, res, True)
                if y is not None:
                    return y
        geometry = self._geometry(x, prep)
        if prepared:
            key = (x.shape, prep, conv_nhwc_call.mode())
            if self._fast[0] != key:  # another shape or thread count than the prepared call's: prepare it anew
                call = conv_nhwc_call.prepare(x.shape, prep, self.act, *geometry)
                self._fast = (key, call, False if call is not None and call.tile == 2 else None)
        shape = (x.shape[0], *geometry[4], prep.w2.shape[0])
        if res is not None and res.shape != shape:  # a broadcasting residual: as the ops do it
            y = bias_act_(conv_nhwc.conv_nhwc_fused(x, prep, None, 0, *geometry) + res, None, self.act)
            if out is None:
                return y
            out[...] = y
            return out
        if out is None and self.donate:
            out = res  # the GEMM adds its product to the residual in place (when it can)
        return conv_nhwc.conv_nhwc_fused(x, prep, res, self.act, *geometry, out=out)

    def _prepare_job(self, call: conv_nhwc_call.NhwcCall | None) -> conv_nhwc_concat.ConcatCall | None:
        """``call`` as a job of one part (None where that does not apply), kept beside it: on the first call
        without a residual or an output slice, the only calls that use it."""
        job = conv_nhwc_concat.prepare(call.shape, [call]) if call is not None else None
        key, current, _ = self._fast
        if current is call:  # (another thread may have prepared another call meanwhile)
            self._fast = (key, call, job)
        return job

    def __repr__(self) -> str:
        return f"NhwcConv({self.label})"


class NhwcConcat:
    """A :class:`~hubkit.runtime.optimize_conv.ConcatConvs` on NHWC values: each part fills its channel slice."""

    __slots__ = ("_fast", "concat_fn", "concat_kwargs", "extends", "label", "nodes", "parts", "reserve")
    note = (
        "each part writes its channel slice of one output; where every part is a convolution of one input with a "
        "prepared call, on 2+ BLAS threads, the parts run as one job, both halves of each on the worker at once "
        "(ops/conv_nhwc_concat.py)"
    )

    def __init__(self, concat: ConcatConvs) -> None:
        self.parts = tuple((None if fn is None else NhwcConv(fn), count) for fn, count in concat.parts)
        self.nodes = concat.nodes
        self.concat_fn = concat.concat_fn
        self.concat_kwargs = {**concat.concat_kwargs, "axis": 3}
        self.label = concat.label + " (NHWC)"
        # A chain of concatenations each growing the last (DenseNet's blocks, see rewrite_layout_plan): the
        # first allocates rows of `reserve` channels; the others (`extends`) write their new channels into
        # the room after their first part's, which then needs no copy.
        self.reserve = 0
        self.extends = False
        # ((input shape, filters, thread mode), the parts as one prepared job or None): convolutions of one input
        self._fast: tuple = ((), None)

    def __call__(self, *args: Any) -> np.ndarray:
        fast = self._fast[1]
        if fast is not None:
            y = fast(args)
            if y is not None:
                return y
        out = self._concat(args)
        mode = conv_nhwc_call.mode()  # the job runs on two threads only: one thread keeps nothing to prepare
        if (
            (mode == 2 or fast is not None) and not self.extends and all(fn is not None for fn, _ in self.parts)
            and isinstance(out, np.ndarray) and out.ndim == 4 and self.reserve <= out.shape[3]
        ):
            key = (getattr(args[0], "shape", None), args[1::2], mode)
            if self._fast[0] != key:  # another input, filters or thread count: prepare the job anew
                self._fast = (key, self._prepare(args))
        return out

    def _prepare(self, args: tuple[Any, ...]) -> conv_nhwc_concat.ConcatCall | None:
        """The parts as one job (:mod:`hubkit.ops.conv_nhwc_concat`) when they are convolutions of one input, each
        with its prepared call."""
        x = args[0]
        if (
            len(args) != 2 * len(self.parts) or not isinstance(x, np.ndarray)
            or any(args[i] is not x for i in range(0, len(args), 2))
        ):
            return None
        calls = []
        for (fn, _), prep in zip(self.parts, args[1::2], strict=True):
            call = fn._fast[1] if fn is not None else None
            calls.append(call if call is not None and call.prep is prep and call.shape == x.shape else None)
        return conv_nhwc_concat.prepare(x.shape, calls)

    def _concat(self, args: tuple[Any, ...]) -> np.ndarray:
        groups, shapes, dtypes = concat_parts(self.parts, args)
        first = shapes[0]
        if first is None or any(
            sh is None or len(sh) != 4 or sh[:3] != first[:3] or dt != dtypes[0] for sh, dt in zip(shapes, dtypes)
        ):
            values = [g[0] if fn is None else fn(*g) for (fn, _), g in zip(self.parts, groups)]
            return self.concat_fn(*values, **self.concat_kwargs)
        channels = sum(sh[3] for sh in shapes)
        out: Any = _grown(groups[0][0], channels) if self.extends and self.parts[0][0] is None else None
        skip = 1 if out is not None else 0  # the first part is in place already
        if out is None:
            rows = self.reserve if self.reserve >= channels else channels
            out = outputs.empty((*first[:3], rows), dtypes[0])[..., :channels]
        c0 = sum(sh[3] for sh in shapes[:skip])
        for (fn, _), g, sh in zip(self.parts[skip:], groups[skip:], shapes[skip:]):
            dst = out[..., c0 : c0 + sh[3]]
            if fn is None:
                dst[...] = g[0]
            else:
                fn(g[0], g[1], out=dst)
            c0 += sh[3]
        return out

    def __repr__(self) -> str:
        return f"NhwcConcat({self.label})"


_byte_bounds: Any = getattr(getattr(np.lib, "array_utils", None), "byte_bounds", None) or getattr(np, "byte_bounds", None)


def _grown(prev: Any, channels: int) -> np.ndarray | None:
    """``prev`` (a concatenation's value, ``(N, H, W, C)`` rows of a wider buffer) widened in place to
    ``channels``, or None when its rows have no room (or it is no such view): the memory after its
    channels must be inside the array it views."""
    if not isinstance(prev, np.ndarray) or prev.ndim != 4 or not prev.flags.writeable or prev.size == 0:
        return None
    n, h, w = prev.shape[:3]
    item = prev.itemsize
    s0, s1, s2, s3 = prev.strides
    if s3 != item or s2 < channels * item or s1 != w * s2 or s0 != h * s1:
        return None
    base = prev
    while isinstance(base.base, np.ndarray):
        base = base.base
    if not base.flags.c_contiguous or not base.flags.writeable:
        return None
    lo, hi = _byte_bounds(base)
    start = prev.ctypes.data
    if start < lo or start + (n * h * w - 1) * s2 + channels * item > hi:
        return None
    # a view of the owning array itself (not of `prev`), so that the next member of the chain finds the
    # same owner and its bounds: NumPy checks the view against the owner's buffer too
    return np.ndarray((n, h, w, channels), prev.dtype, buffer=base, offset=start - lo, strides=prev.strides)


class NhwcPool:
    """A 2-D max or average pool (:class:`~hubkit.runtime.optimize_pool.PoolStep`) on NHWC values."""

    __slots__ = ("_fast", "label", "pool")

    def __init__(self, pool: PoolStep) -> None:
        self.pool = pool
        self.label = pool.label + " (NHWC)"
        self._fast: tuple = ((), None)  # (input shape and dtype, the max pool's prepared call or None)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        fast = self._fast[1]
        if fast is not None:
            y = fast(x)
            if y is not None:
                return y
        a = self.pool.attrs
        n, h, w, c = _four_d(x, self.pool.kind).shape
        kernel, strides = a["kernel_shape"], a["strides"]
        avg = self.pool.kind == "OnnxAveragePool"
        dilations = [1, 1] if avg else (a.get("dilations") or [1, 1])
        hw, begin, end = window_geometry(
            (h, w), kernel, strides, dilations, a["pads"], a.get("auto_pad", "NOTSET"), a.get("ceil_mode", False)
        )
        check_window_sizes((n, c, h, w), hw, begin, end)
        if avg:
            out = pool_nhwc.avg_pool2d_nhwc(x, kernel, strides, begin, end, a.get("count_include_pad", False), hw)
        else:
            key = (x.shape, x.dtype, _packed_gemm.available())  # (Numba may be switched on or off between calls)
            if self._fast[0] != key:  # another input than the prepared call's: prepare it anew
                self._fast = (key, pool_nhwc.prepare_max_pool(x, kernel, strides, dilations, begin, hw))
            out = pool_nhwc.max_pool2d_nhwc(x, kernel, strides, dilations, begin, hw)
        if out is None:  # Numba off: the NCHW step between two conversions
            out = ToNhwc()(self.pool(ToNchw()(x)))
        return out

    def __repr__(self) -> str:
        return f"NhwcPool({self.label})"


class NhwcAffine:
    """A per-channel affine chain and activation (:class:`~hubkit.runtime.optimize_conv.ChannelAffine`) on NHWC."""

    __slots__ = ("act", "label", "nodes")

    def __init__(self, affine: ChannelAffine) -> None:
        self.nodes = affine.nodes
        self.act = affine.act
        self.label = affine.label + " (NHWC)"

    def __call__(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return conv_nhwc.channel_affine_nhwc(_four_d(x, "a per-channel affine"), params[0], params[1], self.act)

    def __repr__(self) -> str:
        return f"NhwcAffine({self.label})"


class NhwcMean:
    """The mean over H and W of an NHWC value, as the NCHW ``(N, C, 1, 1)`` result of ``Mean(axis=(2, 3))``."""

    label = "Mean (from NHWC)"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _four_d(x, "Mean")
        n, _, _, c = x.shape
        return pool_nhwc.global_avg_pool_nhwc(x).reshape(n, c, 1, 1)

    def __repr__(self) -> str:
        return "NhwcMean()"


# -- the pass -------------------------------------------------------------------------------------------
def _nhwc_form(step: tuple) -> tuple[Any, tuple[int, ...], bool] | None:
    """``(NHWC kernel, positions of the inputs that are activations, whether its output stays NHWC)``."""
    fn, kwargs, ins, outs, node = step
    if len(outs) != 1 or node.control_inputs:
        return None
    if isinstance(fn, FusedOnnxConv):
        x = fn.nodes[0].inputs[0]
        if x.shape is None or len(x.shape) != 4 or len(ins) not in (2, 3):
            return None
        return NhwcConv(fn), (0, 2) if len(ins) == 3 else (0,), True
    if isinstance(fn, ConcatConvs):
        if any(t.shape is None or len(t.shape) != 4 for t in fn.nodes[-1].inputs):
            return None
        positions: list[int] = []
        k = 0
        for _, count in fn.parts:
            positions.append(k)
            k += count
        return NhwcConcat(fn), tuple(positions), True
    if isinstance(fn, PoolStep) and fn.kind in ("OnnxMaxPool", "OnnxAveragePool") and len(ins) == 1:
        return NhwcPool(fn), (0,), True
    if isinstance(fn, ChannelAffine) and len(ins) == 2:
        return NhwcAffine(fn), (0,), True
    if node.op == "Mean" and len(ins) == 1 and node.inputs[0].shape is not None and len(node.inputs[0].shape) == 4:
        axes = normalize_axes(kwargs.get("axis"), 4)
        if axes is not None and sorted(axes) == [2, 3] and kwargs.get("keepdims"):
            return NhwcMean(), (0,), False
    return None


def _convs(fn: Any) -> int:
    if isinstance(fn, NhwcConv):
        return 1
    if isinstance(fn, NhwcConcat):
        return sum(1 for part, _ in fn.parts if part is not None)
    return 0


def rewrite_layout_plan(steps: list, keep: set[int], num_slots: int) -> tuple[list, int, int]:
    """``steps`` (``(fn, kwargs, ins, outs, node)``) with their channels-last regions (see the module docstring).

    Returns:
        (new steps, new number of slots, number of steps now running channels-last).
    """
    if not _enabled():
        return steps, num_slots, 0
    forms = {i: f for i, step in enumerate(steps) if (f := _nhwc_form(step)) is not None}
    producer = {s: i for i, step in enumerate(steps) for s in step[3]}
    # Regions: candidates joined through the activations one reads from another's NHWC output.
    parent = {i: i for i in forms}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (_, positions, _) in forms.items():
        for p in positions:
            j = producer.get(steps[i][2][p])
            if j is not None and j in forms and forms[j][2]:
                parent[root(i)] = root(j)
    convs: dict[int, int] = {}
    for i, (fn, _, _) in forms.items():
        convs[root(i)] = convs.get(root(i), 0) + _convs(fn)
    chosen = {i for i in forms if convs[root(i)] >= REGION_MIN_CONVS}
    if not chosen:
        return steps, num_slots, 0
    nchw_readers: dict[int, int] = {}  # slot -> readers that need its NCHW value
    for i, (_, _, ins, _, _) in enumerate(steps):
        act_pos = set(forms[i][1]) if i in chosen else set()
        for p, s in enumerate(ins):
            if p not in act_pos:
                nchw_readers[s] = nchw_readers.get(s, 0) + 1
    nhwc: dict[int, int] = {}  # NCHW slot -> the slot of its NHWC value
    new: list[tuple] = []
    for i, step in enumerate(steps):
        if i not in chosen:
            new.append(step)
            continue
        _, _, ins, outs, node = step
        kernel, positions, stays = forms[i]
        new_ins = list(ins)
        for p in positions:
            s = ins[p]
            if s not in nhwc:  # a value entering the region: converted once, before its first NHWC reader
                nhwc[s] = num_slots
                num_slots += 1
                new.append((ToNhwc(), {}, (s,), (nhwc[s],), node))
            new_ins[p] = nhwc[s]
        if not stays:
            new.append((kernel, {}, tuple(new_ins), outs, node))
            continue
        nhwc[outs[0]] = num_slots
        num_slots += 1
        new.append((kernel, {}, tuple(new_ins), (nhwc[outs[0]],), node))
        if outs[0] in keep or nchw_readers.get(outs[0]):
            new.append((ToNchw(), {}, (nhwc[outs[0]],), outs, node))
    # A residual whose NHWC value its convolution reads last (a region's own array, never fetched or fed:
    # ResNet's shortcuts) lends that convolution its memory.
    region_values = set(nhwc.values())
    last_reader: dict[int, int] = {}
    for k, step in enumerate(new):
        for s in step[2]:
            last_reader[s] = k
    for k, (fn, _, ins, _, _) in enumerate(new):
        if isinstance(fn, NhwcConv) and len(ins) == 3 and ins[2] in region_values and last_reader[ins[2]] == k:
            fn.donate = ins[0] != ins[2]
    _chain_concats(new, last_reader)
    return new, num_slots, len(chosen)


def _chain_concats(steps: list, last_reader: dict[int, int]) -> None:
    """Marks chains of concatenations whose first part is the previous one's value, read last by them
    (DenseNet's blocks: each layer concatenates its 32 new channels to all before): the chain's first
    reserves rows wide enough for its last (the channel count the graph states), the others grow in place."""
    producer = {out: k for k, step in enumerate(steps) for out in step[3]}
    grows: dict[int, int] = {}  # concatenation step -> the concatenation step it grows
    for k, (fn, _, ins, _, _) in enumerate(steps):
        if isinstance(fn, NhwcConcat) and fn.parts[0][0] is None and ins:
            j = producer.get(ins[0])
            if j is not None and isinstance(steps[j][0], NhwcConcat) and last_reader.get(ins[0]) == k:
                grows[k] = j
    grown = {j: k for k, j in grows.items()}
    for head in sorted(set(grown) - set(grows)):
        last = head
        while last in grown:
            last = grown[last]
            steps[last][0].extends = True
        shape = steps[last][0].nodes[-1].outputs[0].shape
        if shape is not None and len(shape) == 4 and shape[1] is not None:
            steps[head][0].reserve = int(shape[1])
