"""ONNX-exact tensor ops whose semantics differ from hubkit's own (reshape with 0, numpy-style broadcasting
of ``Expand``, ``GatherElements``, ``CumSum``, ``TopK``, ``Einsum``, ``Trilu``, ``Range``, ``Pad`` modes,
``Resize``, truncating integer division). Ops that agree with hubkit's (``Add``, ``MatMul``, ``Concat``, ...)
are not repeated here: the ONNX importer maps onto those.
"""

from __future__ import annotations

import math

import numpy as np

from hubkit.graph import int64
from hubkit.ops._helpers import check_dtype, check_output_size, reshape_like, unbroadcast
from hubkit.ops.registry import apply, describe, infer_error, register_op

__all__: list[str] = []


def _const(t):
    return t.node.attrs["value"] if t.node.op == "Const" else None


def onnx_reshape_target(in_shape, target, allowzero: bool = False) -> list:
    """ONNX ``Reshape`` target: 0 copies the input's dimension (unless ``allowzero``), one -1 is inferred."""
    out = []
    for i, d in enumerate(target):
        d = int(d)
        if d == 0 and not allowzero:
            if in_shape is None or i >= len(in_shape):
                raise infer_error(f"shape entry {i} is 0 but the input has no dimension {i}.")
            out.append(in_shape[i])
        else:
            out.append(d)
    if sum(d == -1 for d in out) > 1:
        raise infer_error(f"shape {list(target)} has more than one -1.")
    if -1 in out and None not in out and in_shape is not None and None not in in_shape:
        rest = math.prod(d for d in out if d != -1)
        total = math.prod(in_shape)
        if rest == 0 or total % rest:
            raise infer_error(f"cannot reshape {list(in_shape)} to {list(target)}.")
        out[out.index(-1)] = total // rest
    elif (None not in out and -1 not in out and in_shape is not None and None not in in_shape
          and math.prod(out) != math.prod(in_shape)):
            raise infer_error(f"cannot reshape {list(in_shape)} to {list(target)}.")
    return [None if d == -1 else d for d in out]


@register_op
class OnnxReshape:
    """ONNX ``Reshape``: ``shape`` is a 1-D int64 tensor; 0 keeps the input's dimension, -1 is inferred."""

    aliases_input = True

    def infer(x, shape, *, allowzero=False):
        check_dtype(shape, "i", "the shape")
        value = _const(shape)
        if value is not None:
            return x.dtype, tuple(onnx_reshape_target(x.shape, value.reshape(-1).tolist(), allowzero))
        if shape.shape is None or shape.shape[0] is None:
            return x.dtype, None
        return x.dtype, (None,) * shape.shape[0]

    def forward(x, shape, *, allowzero=False):
        target = [x.shape[i] if (d == 0 and not allowzero) else int(d) for i, d in enumerate(shape.tolist())]
        return np.reshape(x, target)

    def vjp(g, out, x, shape, **attrs):
        return reshape_like(g, x), None


@register_op
class OnnxFlatten:
    """ONNX ``Flatten``: ``(prod(dims[:axis]), prod(dims[axis:]))``."""

    aliases_input = True

    def infer(x, *, axis=1):
        if x.shape is None:
            return x.dtype, (None, None)
        a = axis % (len(x.shape) + 1) if axis < 0 else axis
        if a > len(x.shape):
            raise infer_error(f"axis {axis} is out of range for {describe(x)}.")
        lead, rest = x.shape[:a], x.shape[a:]
        return x.dtype, (None if None in lead else math.prod(lead), None if None in rest else math.prod(rest))

    def forward(x, *, axis=1):
        a = axis % (x.ndim + 1) if axis < 0 else axis
        return x.reshape(math.prod(x.shape[:a]), -1) if x.size else x.reshape(math.prod(x.shape[:a]),
                                                                            math.prod(x.shape[a:]))

    def vjp(g, out, x, **attrs):
        return (reshape_like(g, x),)


@register_op
class OnnxExpand:
    """ONNX ``Expand``: broadcasts ``x`` and a shape of ones of ``shape`` together (numpy rules)."""

    def infer(x, shape):
        check_dtype(shape, "i", "the shape")
        value = _const(shape)
        if value is None:  # a run-time shape: the rank is known when the shape's length is
            if x.shape is None or shape.shape is None or len(shape.shape) != 1 or shape.shape[0] is None:
                return x.dtype, None
            n = max(len(x.shape), shape.shape[0])
            padded = [1] * (n - len(x.shape)) + list(x.shape)
            return x.dtype, tuple(None if d in (1, None) else d for d in padded)
        if x.shape is None:
            return x.dtype, None
        a, b = list(x.shape), [int(d) for d in value.reshape(-1)]
        n = max(len(a), len(b))
        a, b = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
        out = []
        for da, db in zip(a, b):
            if da is None:
                out.append(None if db == 1 else db)
            elif da != db and 1 not in (da, db):
                raise infer_error(f"cannot expand {describe(x)} to {value.tolist()}.")
            else:
                out.append(max(da, db) if 0 not in (da, db) else 0)
        return x.dtype, tuple(out)

    def forward(x, shape):
        out_shape = np.broadcast_shapes(x.shape, tuple(int(d) for d in shape))
        check_output_size(out_shape, "Expand")
        return np.broadcast_to(x, out_shape).copy()

    def vjp(g, out, x, shape):
        return unbroadcast(g, x, g), None


@register_op
class OnnxGatherElements:
    """ONNX ``GatherElements``: ``out[i][j] = x[index[i][j]][j]`` along ``axis`` (negative indices count back)."""

    differentiable = False

    def infer(x, indices, *, axis=0):
        check_dtype(indices, "i", "the indices")
        return x.dtype, indices.shape

    def forward(x, indices, *, axis=0):
        idx = np.where(indices < 0, indices + x.shape[axis], indices)
        return np.take_along_axis(x, idx, axis=axis)


@register_op
class OnnxCumSum:
    """ONNX ``CumSum`` along ``axis``, optionally ``exclusive`` and/or ``reverse``."""

    def infer(x, *, axis, exclusive=False, reverse=False):
        check_dtype(x, "fi", "the input")
        return x.dtype, x.shape

    def forward(x, *, axis, exclusive=False, reverse=False):
        y = np.flip(x, axis) if reverse else x
        out = np.cumsum(y, axis=axis, dtype=x.dtype)
        if exclusive:
            out = np.concatenate([np.zeros_like(np.take(out, [0], axis=axis)),
                                  np.take(out, range(out.shape[axis] - 1), axis=axis)], axis=axis)
        return np.ascontiguousarray(np.flip(out, axis) if reverse else out)

    def vjp(g, out, x, *, axis, exclusive=False, reverse=False):
        return (apply("OnnxCumSum", g, axis=axis, exclusive=exclusive, reverse=not reverse),)


@register_op
class OnnxTopK:
    """ONNX ``TopK``: the ``k`` largest (or smallest) values along ``axis`` and their int64 indices.

    Ties keep the lower index first, as ONNX requires.
    """

    differentiable = False

    def infer(x, k, *, axis=-1, largest=True, sorted=True):
        check_dtype(k, "i", "k")
        value = _const(k)
        if x.shape is None:
            return [(x.dtype, None), (int64, None)]
        a = axis % len(x.shape)
        shape = list(x.shape)
        shape[a] = None if value is None else int(value.reshape(-1)[0])
        return [(x.dtype, tuple(shape)), (int64, tuple(shape))]

    def forward(x, k, *, axis=-1, largest=True, sorted=True):
        k = int(np.asarray(k).reshape(-1)[0])
        key = -x if largest else x
        idx = np.argsort(key, axis=axis, kind="stable")
        idx = np.take(idx, range(k), axis=axis)
        return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


def einsum_shape(equation: str, shapes, error) -> tuple[int, ...]:
    """The shape ``np.einsum(equation, *operands)`` gives for operands of ``shapes``, without computing it.

    The import ran ``np.einsum`` on uninitialised operands of the declared shapes to learn it: four declared
    ``[300]`` vectors and ``"i,j,k,l->ijkl"`` allocated and computed 8e9 values at import, two ``[20000, 20000]``
    matrices 8e12 multiply-adds. The equation is parsed here (numpy's rules: size-1 dimensions broadcast, an
    implicit output holds the broadcast ellipsis, then the labels used once in ASCII order); NumPy then checks it
    on stand-ins that keep the sizes' equalities and 1s (each other size becomes 2, 3, ...) when they are small.
    """
    shapes = [tuple(int(d) for d in sh) for sh in shapes]
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes) or "->" in rhs:
        raise error(f"equation {equation!r} does not fit {len(shapes)} operands.")
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    ellipses: list[tuple[int, ...]] = []
    for term, shape in zip(terms, shapes):
        before, dots, after = term.partition("...")
        letters = before + after
        if (letters and not letters.isalpha()) or not letters.isascii() or "." in after:
            raise error(f"equation {equation!r}: term {term!r} is not letters with at most one '...'.")
        n_ell = len(shape) - len(before) - len(after)
        if n_ell < 0 or (n_ell and not dots):
            raise error(f"equation {equation!r}: term {term!r} does not fit an operand of shape {list(shape)}.")
        if dots:
            ellipses.append(shape[len(before) : len(shape) - len(after)])
        own: dict[str, int] = {}
        for label, d in zip(letters, shape[: len(before)] + shape[len(shape) - len(after) :]):
            if own.setdefault(label, d) != d:  # a diagonal: no broadcasting within one operand
                raise error(f"equation {equation!r}: label {label!r} of term {term!r} has sizes {own[label]} and {d}.")
            counts[label] = counts.get(label, 0) + 1
            known = sizes.get(label, 1)
            if known != 1 and d not in (1, known):
                raise error(f"equation {equation!r}: label {label!r} has sizes {known} and {d}.")
            sizes[label] = d if known == 1 else known
    rank = max((len(e) for e in ellipses), default=0)
    ell = [1] * rank
    for e in ellipses:
        for i, d in enumerate(e, start=rank - len(e)):
            if ell[i] != 1 and d not in (1, ell[i]):
                raise error(f"equation {equation!r}: the '...' dimensions {list(e)} do not broadcast.")
            ell[i] = d if ell[i] == 1 else ell[i]
    if not arrow:
        out = [*ell, *(sizes[label] for label in sorted(label for label, c in counts.items() if c == 1))]
    else:
        before, dots, after = rhs.partition("...")
        labels = before + after
        if (labels and not (labels.isalpha() and labels.isascii())) or "." in after or len(set(labels)) != len(labels) \
                or any(label not in sizes for label in labels) or (rank and not dots):
            raise error(f"equation {equation!r}: the output {rhs!r} does not fit the operands.")
        out = [*(sizes[label] for label in before), *(ell if dots else []), *(sizes[label] for label in after)]
    _check_with_numpy(equation, shapes, tuple(out), error)
    return tuple(out)


def _check_with_numpy(equation: str, shapes, out: tuple[int, ...], error) -> None:
    """``np.einsum`` on small stand-ins (no memory: broadcast views) must give ``out``'s shape, mapped."""
    distinct = sorted({d for sh in [*shapes, out] for d in sh} - {0, 1})
    small = {d: i + 2 for i, d in enumerate(distinct)}
    stand = [tuple(small.get(d, d) for d in sh) for sh in shapes]
    expected = tuple(small.get(d, d) for d in out)
    if max([math.prod(expected), *(math.prod(sh) for sh in stand)], default=1) > 1 << 16:
        return  # too many distinct sizes to run cheaply: the parse above stands
    try:
        got = np.einsum(equation, *[np.broadcast_to(np.float32(0), sh) for sh in stand]).shape
    except ValueError as e:
        raise error(f"equation {equation!r} does not fit the operands: {e}.") from None
    if got != expected:
        raise error(f"equation {equation!r}: its output shape could not be determined.")


@register_op
class OnnxEinsum:
    """ONNX ``Einsum`` with an explicit or implicit output (numpy's semantics)."""

    def infer(*xs, equation):
        if any(x.dtype is not xs[0].dtype for x in xs):
            raise infer_error("all operands must have one dtype.")
        shapes = [x.shape for x in xs]
        if any(s is None for s in shapes):
            return xs[0].dtype, None
        out = einsum_shape(equation, [tuple(1 if d is None else d for d in s) for s in shapes], infer_error)
        if any(None in s for s in shapes):
            return xs[0].dtype, tuple(None for _ in out)
        return xs[0].dtype, out

    def forward(*xs, equation):
        check_output_size(einsum_shape(equation, [x.shape for x in xs], ValueError), "Einsum")  # outer products
        return np.asarray(np.einsum(equation, *xs, optimize=len(xs) > 2))

    def vjp(g, out, *xs, equation):
        ins, _, result = equation.replace(" ", "").partition("->")
        terms = ins.split(",")
        if "..." in equation or "->" not in equation:
            raise infer_error(f"the gradient of Einsum {equation!r} needs an explicit output without '...'.")
        grads = []
        for i, x in enumerate(xs):
            others = [t for j, t in enumerate(terms) if j != i]
            missing = set(terms[i]) - set(result) - {c for t in others for c in t}
            if missing or len(set(terms[i])) != len(terms[i]):
                raise infer_error(f"the gradient of Einsum {equation!r} for operand {i} is not supported.")
            eq = ",".join([result, *others]) + "->" + terms[i]
            grads.append(apply("OnnxEinsum", g, *[x for j, x in enumerate(xs) if j != i], equation=eq))
        return tuple(grads)


@register_op
class OnnxTrilu:
    """ONNX ``Trilu``: keeps the upper (or lower) triangle of the last two axes, shifted by diagonal ``k``."""

    def infer(x, *k, upper=True):
        if x.shape is not None and len(x.shape) < 2:
            raise infer_error(f"needs an input of rank 2 or more, got {describe(x)}.")
        return x.dtype, x.shape

    def forward(x, *k, upper=True):
        kk = int(np.asarray(k[0]).reshape(-1)[0]) if k else 0
        # Every k at or beyond the matrix's edges keeps (or drops) everything: clamping changes nothing, and
        # numpy computes k - 1 in a C long (k = -2**63 overflowed).
        kk = min(max(kk, -x.shape[-2]), x.shape[-1])
        return np.triu(x, kk) if upper else np.tril(x, kk)

    def vjp(g, out, x, *k, upper=True):
        return (apply("OnnxTrilu", g, *k, upper=upper), *([None] * len(k)))


@register_op
class OnnxRange:
    """ONNX ``Range``: ``start, start + delta, ...`` below ``limit`` (scalars of one dtype)."""

    differentiable = False

    def infer(start, limit, delta):
        values = [_const(t) for t in (start, limit, delta)]
        if None in values:
            return start.dtype, (None,)
        return start.dtype, (_range_length(*(v.reshape(-1)[0].item() for v in values)),)

    def forward(start, limit, delta):
        s, lim, d = start.item(), limit.item(), delta.item()
        n = _range_length(s, lim, d)
        check_output_size([n], "Range")  # limits from tensors: counted before anything is built
        return (s + d * np.arange(n)).astype(start.dtype)


def _range_length(s, lim, d) -> int:
    """``max(0, ceil((lim - s) / d))``, exactly for integers; refuses a zero step and non-finite values."""
    if d == 0:
        raise infer_error(f"the step (delta) is 0: start {s}, limit {lim}.")
    if isinstance(s, int) and isinstance(lim, int) and isinstance(d, int):
        return max(0, -((s - lim) // d))
    n = (lim - s) / d
    if not math.isfinite(n):
        raise infer_error(f"start {s}, limit {lim} and delta {d} do not give a finite number of elements.")
    return max(0, math.ceil(n))


@register_op
class OnnxPad:
    """ONNX ``Pad`` in ``reflect``, ``edge`` or ``wrap`` mode (``constant`` maps onto hubkit's ``Pad``)."""

    differentiable = False

    def infer(x, *, pads, mode):
        if x.shape is None:
            return x.dtype, None
        n = len(x.shape)
        return x.dtype, tuple(None if d is None else d + pads[i] + pads[n + i] for i, d in enumerate(x.shape))

    def forward(x, *, pads, mode):
        n = x.ndim
        check_output_size([d + pads[i] + pads[n + i] for i, d in enumerate(x.shape)], "Pad")
        return np.pad(x, [(pads[i], pads[n + i]) for i in range(n)], mode={"edge": "edge", "reflect": "reflect",
                                                                          "wrap": "wrap"}[mode])


@register_op
class OnnxIntDiv:
    """Integer ``Div`` of ONNX: truncates toward zero (C semantics), unlike Python's floor division."""

    differentiable = False

    def infer(x, y):
        check_dtype(x, "i", "the dividend")
        if y.dtype is not x.dtype:
            raise infer_error(f"operands {describe(x)} and {describe(y)} must have one dtype.")
        from hubkit.graph.shapes import broadcast_shapes

        shape = broadcast_shapes(x.shape, y.shape)
        if shape is False:
            raise infer_error(f"cannot broadcast {describe(x)} with {describe(y)}.")
        return x.dtype, shape

    def forward(x, y):
        with np.errstate(divide="ignore"):  # ONNX leaves integer division by 0 undefined: numpy's 0, silently
            q = np.abs(x) // np.abs(y)
        return (np.sign(x) * np.sign(y) * q).astype(x.dtype)


def _resize_source(out_len: int, in_len: int, scale: float, coord: str) -> np.ndarray:
    """Where each output index samples the input, in input coordinates (ONNX ``coordinate_transformation_mode``)."""
    x = np.arange(out_len, dtype=np.float64)
    if coord == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(x)
    if coord == "align_corners":
        return x * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(x)
    if coord == "asymmetric":
        return x / scale
    if coord == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    raise ValueError(f"coordinate_transformation_mode {coord!r} is not supported.")


_NEAREST = {
    "round_prefer_floor": lambda v: np.ceil(v - 0.5),
    "round_prefer_ceil": lambda v: np.floor(v + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}
RESIZE_COORDS = ("align_corners", "asymmetric", "half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn")


def _resize_out(shape, sizes, scales):
    if sizes:
        return [int(s) for s in sizes]
    return [None if d is None else int(np.floor(d * s)) for d, s in zip(shape, scales)]


@register_op
class OnnxResize:
    """ONNX ``Resize`` in ``nearest`` or ``linear`` mode (separable along each resized axis)."""

    differentiable = False

    def infer(x, *, scales, sizes, mode, coord, nearest_mode="round_prefer_floor"):
        check_dtype(x, "f", "the input")
        if mode not in ("nearest", "linear") or coord not in RESIZE_COORDS or nearest_mode not in _NEAREST:
            raise infer_error(f"mode {mode!r}, coordinate mode {coord!r} or nearest mode {nearest_mode!r} is not "
                              f"supported; modes: ['linear', 'nearest'], coordinate modes: {list(RESIZE_COORDS)}.")
        if x.shape is None:
            return x.dtype, None
        return x.dtype, tuple(_resize_out(x.shape, sizes, scales))

    def forward(x, *, scales, sizes, mode, coord, nearest_mode="round_prefer_floor"):
        out_shape = _resize_out(x.shape, sizes, scales)
        check_output_size(out_shape, "Resize")
        y = x
        for axis, (n_in, n_out) in enumerate(zip(x.shape, out_shape)):
            scale = scales[axis] if not sizes else n_out / n_in
            if n_in == n_out and scale == 1:
                continue
            src = _resize_source(n_out, n_in, scale, coord)
            if mode == "nearest":
                idx = np.clip(_NEAREST[nearest_mode](src), 0, n_in - 1).astype(np.int64)
                y = np.take(y, idx, axis=axis)
                continue
            src = np.clip(src, 0, n_in - 1)
            lo = np.floor(src).astype(np.int64)
            hi = np.minimum(lo + 1, n_in - 1)
            w = (src - lo).astype(x.dtype).reshape([-1 if i == axis else 1 for i in range(x.ndim)])
            y = np.take(y, lo, axis=axis) * (1 - w) + np.take(y, hi, axis=axis) * w
        return np.ascontiguousarray(y, dtype=x.dtype)
