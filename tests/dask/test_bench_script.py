"""scripts/bench_dask.py's bookkeeping: rounds in rotating order with the control first, paired ratios.

No timing is asserted: the costs and the control's processes are stand-ins with fixed values.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "..", "scripts")


@pytest.fixture(scope="module")
def bench():
    saved_env, saved_path = dict(os.environ), list(sys.path)
    try:  # the script sets the thread-count variables and puts scripts/ on sys.path when imported
        spec = importlib.util.spec_from_file_location("bench_dask", os.path.join(SCRIPTS, "bench_dask.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
    return module


def test_rounds_rotate_the_order_and_run_the_control_first(bench):
    calls: list[str] = []
    jobs = {"single": None, "a": None, "b": None}

    def measure(name):
        calls.append(name)
        return bench.Cost(float(len(calls)), 0.0, {}), name

    costs, results = bench.rounds_of(jobs, 4, measure, each_round=lambda: calls.append("control"))
    assert calls == ["control", "single", "a", "b", "control", "a", "b", "single",
                     "control", "b", "single", "a", "control", "single", "a", "b"]
    assert results == {"single": "single", "a": "a", "b": "b"}
    assert [c.wall for c in costs["single"]] == [2.0, 8.0, 11.0, 14.0]  # each contender's costs in round order


def test_paired_ratios_divide_within_each_round(bench):
    def runs(*walls):
        return [bench.Cost(w, 0.0, {}) for w in walls]

    costs = {"single": runs(4.0, 8.0, 6.0), "dask-2": runs(2.0, 8.0, 3.0), "2 processes": runs(2.5, 4.0, 3.0)}
    assert bench.paired_ratios(costs) == {"dask-2": [2.0, 1.0, 2.0], "2 processes": [1.6, 2.0, 2.0]}


class FakePlain:
    """Stands in for PlainProcesses: the control takes 1 CPU second per million iterations, twice as long in two."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def control(self, processes: int, iterations: int) -> list[tuple[float, float]]:
        self.calls.append((processes, iterations))
        seconds = iterations / 1e6
        if processes == 1:
            return [(seconds, seconds)]
        return [(seconds * 1.25, seconds * 1.1), (seconds * 1.6, seconds * 1.1)]


def test_control_calibrates_then_measures_one_and_two_processes(bench):
    plain = FakePlain()
    control = bench.Control(plain, 0.6)
    assert plain.calls == [(1, 300_000)] * 3 and control.iterations == 600_000
    control()
    control()
    assert plain.calls[3:] == [(1, 600_000), (2, 600_000)] * 2
    assert control.scaling == pytest.approx([1.25, 1.25])  # 2 x 0.6 s over the slower of the two (0.96 s)
    assert control.cpu_ratio == pytest.approx([1.1, 1.1])  # two processes' mean CPU over the one's
    assert len(control.load) == 2


def test_control_loop_is_plain_integer_work(bench):
    assert bench.control_loop(4) == (0 + 1 + 4 + 9) & 0xFFFF
