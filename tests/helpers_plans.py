"""Compile one plan twice, with the plan optimiser off and on, so tests can compare what each computes."""

from __future__ import annotations

import numpy as np

from hubkit.ops._epilogue import RELU, RELU6
from hubkit.runtime.executor import compile_plan
from hubkit.runtime.optimize import set_optimize_enabled


def plain_and_optimised(graph, fetches, feeds):
    """Returns ``(plain, optimised)``: the plan compiled with the optimiser off, then with the default."""
    set_optimize_enabled(False)
    try:
        plain = compile_plan(graph, fetches, feeds)
    finally:
        set_optimize_enabled(None)
    return plain, compile_plan(graph, fetches, feeds)


def dense_reference(x, w, bias, act):
    """A dense layer in float64 (``x @ w`` + bias, then ReLU/ReLU6), and ``|x| @ |w|`` to scale tolerances."""
    z = x.astype(np.float64) @ w.astype(np.float64)
    if bias is not None:
        z = z + bias
    if act == RELU:
        z = np.maximum(z, 0)
    elif act == RELU6:
        z = np.clip(z, 0, 6)
    return z, np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64))
