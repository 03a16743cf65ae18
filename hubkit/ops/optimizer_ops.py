"""Fused, in-place optimizer updates: one stateful op per (rule, dense or sparse gradient).

Each op's first inputs are the variable and its slot variables (``Variable`` read nodes); ``prepare``
binds the runtime ``Variable`` objects once per compiled plan, and ``forward`` updates their arrays
in place with NumPy ``out=`` arguments and one reusable scratch buffer, so a step allocates almost
nothing. The ops produce no output; ``hubkit.train`` optimizers group them into a training op.

Sparse variants take a gradient as ``(values, indices)`` rows (an ``IndexedSlices``), sum repeated
indices first, and touch only those rows of the variable and of its slots. Sparse Adam uses the
"lazy Adam" rule: the moments of rows absent from the batch are not decayed.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Node, Tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.ops import _numba
from hubkit.ops.registry import infer_error, register_op

__all__: list[str] = []  # used through hubkit.train optimizers, not as public functions


def _check(what: str, variables: list[Tensor], lr: Tensor, grad: Tensor, indices: Tensor | None = None):
    var = variables[0]
    for t in variables:
        if t.node.op != "Variable":
            raise infer_error(f"{what} updates variables in place; input {t.name!r} is not a variable.")
        if t.dtype is not var.dtype or t.shape != var.shape:
            raise infer_error(
                f"{what}: slot {t.name!r} ({format_shape(t.shape)} {t.dtype.name}) does not match the variable "
                f"{var.name!r} ({format_shape(var.shape)} {var.dtype.name})."
            )
    if not var.dtype.is_floating:
        raise infer_error(f"{what} needs a floating-point variable; {var.name!r} is {var.dtype.name}.")
    for t in (lr, grad):
        if t.dtype is not var.dtype:
            raise infer_error(f"{what} of {var.name!r}: {t.name!r} has dtype {t.dtype.name}, not {var.dtype.name}.")
    if lr.shape is not None and lr.shape != ():
        raise infer_error(f"{what}: the learning rate {lr.name!r} must be a scalar, got {format_shape(lr.shape)}.")
    if indices is None:
        if merge_shapes(var.shape, grad.shape) is False:
            raise infer_error(
                f"{what} of {var.name!r}: gradient shape {format_shape(grad.shape)} does not match "
                f"{format_shape(var.shape)}."
            )
    elif not indices.dtype.is_integer:
        raise infer_error(f"{what}: indices {indices.name!r} must be integers, got {indices.dtype.name}.")
    return []


def _bind(n_vars: int):
    """A ``prepare`` that binds the first ``n_vars`` inputs' runtime Variables and a scratch holder."""

    def prepare(node: Node) -> dict:
        targets = []
        for t in node.inputs[:n_vars]:
            try:
                targets.append(node.graph.variables[t.node.name])
            except KeyError:
                raise GraphError(f"Variable node {t.node.name!r} has no value bound to it in this graph.") from None
        return {"targets": tuple(targets), "scratch": {}}

    return prepare


def _buffer(scratch: dict, key: str, like: np.ndarray) -> np.ndarray:
    """A reusable temporary the size of ``like`` (kept per compiled plan, so steps do not allocate)."""
    buf = scratch.get(key)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
        buf = scratch[key] = np.empty_like(like)
    return buf


def _rows(values: np.ndarray, indices: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique row indices, summed gradient rows): repeated indices add up, as in a dense gradient."""
    idx = np.asarray(indices).reshape(-1)
    vals = np.asarray(values, dtype=var.dtype).reshape((idx.shape[0], *var.shape[1:]))
    uniq, inverse = np.unique(idx, return_inverse=True)
    if uniq.shape[0] == idx.shape[0]:
        summed = np.empty_like(vals)
        summed[inverse] = vals
    else:
        summed = np.zeros((uniq.shape[0], *var.shape[1:]), dtype=var.dtype)
        np.add.at(summed, inverse, vals)
    if uniq.size and (uniq[0] < -var.shape[0] or uniq[-1] >= var.shape[0]):
        raise GraphError(f"Sparse update indices must lie in [0, {var.shape[0]}); got {uniq[[0, -1]].tolist()}.")
    return uniq, summed


class _Update:
    differentiable = False
    stateful = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each update's ``forward`` ends the writes it began (``Variable._written`` for every target)."""
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if forward is None:
            return

        @functools.wraps(forward)
        def ended(*args: Any, targets: tuple, scratch: dict, **kw: Any) -> Any:
            try:
                return forward(*args, targets=targets, scratch=scratch, **kw)
            finally:
                for target in targets:
                    target._written()

        cls.forward = ended  # type: ignore[attr-defined]


# -- gradient descent ------------------------------------------------------------------------------
@register_op
class ApplyGradientDescent(_Update):
    """``var -= lr * grad``."""

    prepare = _bind(1)

    def infer(var, lr, grad):
        return _check("ApplyGradientDescent", [var], lr, grad)

    def forward(var, lr, grad, *, targets, scratch):
        w = targets[0]._writable()
        t = _buffer(scratch, "t", w)
        np.multiply(grad, lr, out=t)
        np.subtract(w, t, out=w)


@register_op
class SparseApplyGradientDescent(_Update):
    """``var[indices] -= lr * values`` (repeated indices accumulate)."""

    prepare = _bind(1)

    def infer(var, lr, values, indices):
        return _check("SparseApplyGradientDescent", [var], lr, values, indices)

    def forward(var, lr, values, indices, *, targets, scratch):
        w = targets[0]._writable()
        rows, g = _rows(values, indices, w)
        w[rows] -= g * lr


# -- momentum --------------------------------------------------------------------------------------
@register_op
class ApplyMomentum(_Update):
    """``accum = momentum * accum + grad; var -= lr * accum`` (Nesterov: ``lr * (grad + momentum * accum)``)."""

    prepare = _bind(2)

    def infer(var, accum, lr, grad, *, momentum, use_nesterov=False):
        return _check("ApplyMomentum", [var, accum], lr, grad)

    def forward(var, accum, lr, grad, *, momentum, use_nesterov=False, targets, scratch):
        w, a = targets[0]._writable(), targets[1]._writable()
        t = _buffer(scratch, "t", w)
        a *= momentum
        a += grad
        if use_nesterov:
            np.multiply(a, momentum, out=t)
            t += grad
            t *= lr
        else:
            np.multiply(a, lr, out=t)
        w -= t


@register_op
class SparseApplyMomentum(_Update):
    """The momentum rule on the gradient's rows only."""

    prepare = _bind(2)

    def infer(var, accum, lr, values, indices, *, momentum, use_nesterov=False):
        return _check("SparseApplyMomentum", [var, accum], lr, values, indices)

    def forward(var, accum, lr, values, indices, *, momentum, use_nesterov=False, targets, scratch):
        w, a = targets[0]._writable(), targets[1]._writable()
        rows, g = _rows(values, indices, w)
        acc = a[rows] * momentum + g
        a[rows] = acc
        w[rows] -= lr * (g + momentum * acc) if use_nesterov else lr * acc


# -- Adam ------------------------------------------------------------------------------------------
def adam_kernel(w, m, v, g, c1, c2, eps, lr):  # pragma: no cover - compiled by Numba
    """:class:`ApplyAdam`'s NumPy passes in one: the same operations in the same order, in the arrays' dtype
    (the Python-float factors rounded to it, as NumPy does), so the same bits; 1-D contiguous arrays."""
    for i in range(w.shape[0]):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * c1
        vi = v[i] + (gi * gi - v[i]) * c2
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - mi / (np.sqrt(vi) + eps) * lr


def _adam_lr(lr, beta1_power, beta2_power) -> float:
    return float(lr) * float(np.sqrt(1.0 - beta2_power)) / (1.0 - float(beta1_power))


@register_op
class ApplyAdam(_Update):
    """Adam (Kingma & Ba), as TensorFlow 1 applies it.

    ``lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power)``, ``m += (1 - beta1) * (grad - m)``,
    ``v += (1 - beta2) * (grad**2 - v)``, ``var -= lr_t * m / (sqrt(v) + epsilon)``. The beta powers
    are variables the optimizer multiplies by beta1 and beta2 after each step.
    """

    prepare = _bind(3)

    def infer(var, m, v, beta1_power, beta2_power, lr, grad, *, beta1, beta2, epsilon):
        return _check("ApplyAdam", [var, m, v], lr, grad)

    def forward(var, m, v, beta1_power, beta2_power, lr, grad, *, beta1, beta2, epsilon, targets, scratch):
        w, mm, vv = (x._writable() for x in targets)
        lr_t = _adam_lr(lr, beta1_power, beta2_power)
        fast = _numba.kernel(adam_kernel, numpy_errors=True) if w.dtype in _numba.FLOAT_DTYPES else None
        g = np.asarray(grad)
        if (
            fast is not None and g.shape == w.shape == mm.shape == vv.shape  # Numba checks no index
            and g.dtype == w.dtype == mm.dtype == vv.dtype and all(a.flags.c_contiguous for a in (w, mm, vv))
        ):
            t = w.dtype.type
            fast(w.reshape(-1), mm.reshape(-1), vv.reshape(-1), np.ascontiguousarray(g).reshape(-1),
                 t(1.0 - beta1), t(1.0 - beta2), t(epsilon), t(lr_t))
            return
        t = _buffer(scratch, "t", w)
        np.subtract(grad, mm, out=t)
        t *= 1.0 - beta1
        mm += t
        np.multiply(grad, grad, out=t)
        t -= vv
        t *= 1.0 - beta2
        vv += t
        np.sqrt(vv, out=t)
        t += epsilon
        np.divide(mm, t, out=t)
        t *= lr_t
        w -= t


@register_op
class SparseApplyAdam(_Update):
    """Lazy Adam: the Adam rule on the gradient's rows only; other rows' moments are not decayed."""

    prepare = _bind(3)

    def infer(var, m, v, beta1_power, beta2_power, lr, values, indices, *, beta1, beta2, epsilon):
        return _check("SparseApplyAdam", [var, m, v], lr, values, indices)

    def forward(var, m, v, beta1_power, beta2_power, lr, values, indices, *, beta1, beta2, epsilon, targets, scratch):
        w, mm, vv = (x._writable() for x in targets)
        rows, g = _rows(values, indices, w)
        lr_t = _adam_lr(lr, beta1_power, beta2_power)
        m_rows = mm[rows] * beta1 + (1.0 - beta1) * g
        v_rows = vv[rows] * beta2 + (1.0 - beta2) * (g * g)
        mm[rows] = m_rows
        vv[rows] = v_rows
        w[rows] -= lr_t * m_rows / (np.sqrt(v_rows) + epsilon)


# -- Adagrad ---------------------------------------------------------------------------------------
@register_op
class ApplyAdagrad(_Update):
    """``accum += grad**2; var -= lr * grad / sqrt(accum)``."""

    prepare = _bind(2)

    def infer(var, accum, lr, grad):
        return _check("ApplyAdagrad", [var, accum], lr, grad)

    def forward(var, accum, lr, grad, *, targets, scratch):
        w, a = targets[0]._writable(), targets[1]._writable()
        t = _buffer(scratch, "t", w)
        np.multiply(grad, grad, out=t)
        a += t
        np.sqrt(a, out=t)
        np.divide(grad, t, out=t)
        t *= lr
        w -= t


@register_op
class SparseApplyAdagrad(_Update):
    """The Adagrad rule on the gradient's rows only."""

    prepare = _bind(2)

    def infer(var, accum, lr, values, indices):
        return _check("SparseApplyAdagrad", [var, accum], lr, values, indices)

    def forward(var, accum, lr, values, indices, *, targets, scratch):
        w, a = targets[0]._writable(), targets[1]._writable()
        rows, g = _rows(values, indices, w)
        acc = a[rows] + g * g
        a[rows] = acc
        w[rows] -= lr * g / np.sqrt(acc)


# -- RMSProp ---------------------------------------------------------------------------------------
@register_op
class ApplyRMSProp(_Update):
    """``ms += (1 - rho) * (grad**2 - ms); mom = momentum * mom + lr * grad / sqrt(ms + epsilon); var -= mom``."""

    prepare = _bind(3)

    def infer(var, ms, mom, lr, grad, *, rho, momentum, epsilon):
        return _check("ApplyRMSProp", [var, ms, mom], lr, grad)

    def forward(var, ms, mom, lr, grad, *, rho, momentum, epsilon, targets, scratch):
        w, s, mo = (x._writable() for x in targets)
        t = _buffer(scratch, "t", w)
        np.multiply(grad, grad, out=t)
        t -= s
        t *= 1.0 - rho
        s += t
        np.add(s, epsilon, out=t)
        np.sqrt(t, out=t)
        np.divide(grad, t, out=t)
        t *= lr
        mo *= momentum
        mo += t
        w -= mo


@register_op
class SparseApplyRMSProp(_Update):
    """The RMSProp rule on the gradient's rows only."""

    prepare = _bind(3)

    def infer(var, ms, mom, lr, values, indices, *, rho, momentum, epsilon):
        return _check("SparseApplyRMSProp", [var, ms, mom], lr, values, indices)

    def forward(var, ms, mom, lr, values, indices, *, rho, momentum, epsilon, targets, scratch):
        w, s, mo = (x._writable() for x in targets)
        rows, g = _rows(values, indices, w)
        s_rows = s[rows] + (1.0 - rho) * (g * g - s[rows])
        m_rows = momentum * mo[rows] + lr * g / np.sqrt(s_rows + epsilon)
        s[rows] = s_rows
        mo[rows] = m_rows
        w[rows] -= m_rows
