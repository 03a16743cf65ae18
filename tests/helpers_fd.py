"""Finite-difference gradient checks shared by every op family's gradient table.

A test module checks gradients (with :func:`check_vjp` or its own finite differences) and declares
the ops it checks with :func:`cover`, next to the check. The coverage test in
``tests/ops/test_gradients_table.py`` imports every test module that calls :func:`cover` and asserts
that every differentiable op hubkit registers, of every family, is covered::

    from tests.helpers_fd import check_vjp, cover
    cover("hubkit.ops.nn", ["Relu", "Softmax"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

import hubkit as hk

__all__ = ["COVERED", "check_vjp", "cover"]

# Op type whose gradient some test checks against finite differences -> the family it was declared in.
COVERED: dict[str, str] = {}


def cover(family_module: str, op_types: Iterable[str]) -> None:
    """Declares that the calling test module checks the gradients of ``op_types``, ops of ``family_module``.

    The coverage test checks that each op is registered by ``family_module``, so a renamed op or a
    typo cannot pass for coverage.
    """
    for op_type in op_types:
        COVERED[op_type] = family_module


def _float64(a: Any) -> np.ndarray:
    arr = np.asarray(a)
    return arr.astype(np.float64) if arr.dtype.kind == "f" else arr


def check_vjp(
    op_fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
    ops: Iterable[str] = (),
) -> list[np.ndarray]:
    """Checks ``hubkit.gradients`` of ``op_fn`` against central finite differences, in float64.

    Builds a graph with one placeholder per input (float inputs become float64 and are
    differentiated; integer and bool inputs are fed as they are), takes the gradient of
    ``sum(out * w)`` for fixed random weights ``w`` (summed over every float output when ``op_fn``
    returns several), densifies IndexedSlices, and compares with finite differences of that loss.

    Args:
        op_fn: builds the op(s) from the placeholders.
        inputs: the input values.
        eps: the finite-difference step.
        rtol, atol: tolerances of the comparison.
        seed: seeds the weights.
        ops: op types that must appear in the built graph (guards a table against testing the
            wrong op).

    Returns:
        The analytic gradients, one per float input.
    """
    values = [_float64(a) for a in inputs]
    rng = np.random.default_rng(seed)
    graph = hk.Graph()
    with graph.as_default():
        phs = [hk.placeholder(hk.as_dtype(v.dtype), v.shape, name=f"in{i}") for i, v in enumerate(values)]
        out = op_fn(*phs)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        terms = []
        for o in outs:
            if o.dtype is hk.float64:
                w = hk.placeholder(hk.float64, o.shape, name="w")
                terms.append((w, hk.reduce_sum(o * w)))
        assert terms, "op_fn must return at least one float output"
        loss = hk.add_n([t for _, t in terms])
        diff = [i for i, v in enumerate(values) if v.dtype.kind == "f"]
        grads = hk.gradients(loss, [phs[i] for i in diff])
        dense = []
        for i, g in zip(diff, grads):
            if g is None:
                dense.append(hk.zeros_like(phs[i]))
            elif isinstance(g, hk.IndexedSlices):
                dense.append(g.to_dense())
            else:
                dense.append(g)
    present = {n.op for n in graph.nodes}
    missing = sorted(set(ops) - present)
    assert not missing, f"ops {missing} were not built by op_fn; built: {sorted(present)}"
    sess = hk.Session(graph)
    feed = {p: v for p, v in zip(phs, values)}
    probe = sess.run([o for o in outs if o.dtype is hk.float64], feed)
    for (w, _), o in zip(terms, probe):
        feed[w] = rng.standard_normal(np.shape(o))
    analytic = sess.run(dense, feed)
    for i, g in zip(diff, analytic):
        x = values[i]
        numeric = np.zeros(x.shape)
        flat_x, flat_n = x.reshape(-1), numeric.reshape(-1)
        for j in range(flat_x.size):
            orig = flat_x[j]
            flat_x[j] = orig + eps
            up = float(sess.run(loss, feed))
            flat_x[j] = orig - eps
            down = float(sess.run(loss, feed))
            flat_x[j] = orig
            flat_n[j] = (up - down) / (2 * eps)
        np.testing.assert_allclose(
            g, numeric, rtol=rtol, atol=atol, err_msg=f"gradient of input {i} disagrees with finite differences"
        )
    return analytic
