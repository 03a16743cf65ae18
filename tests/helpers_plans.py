"""Compile one plan twice, with the plan optimiser off and on, so tests can compare what each computes."""

from __future__ import annotations

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
