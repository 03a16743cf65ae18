"""Module benchmark: signature-call overhead and load time, each against a baseline in the same process.

1. Eager ``m(x)`` on a loaded MLP module (784-512-512-10, ReLU) against a bare ``Session.run`` of the
   very graph the module runs, at batch 1 and 64 (target at batch 1: at most 1.3x). Calls are
   interleaved; the reported time is the median (and minimum) per call.
2. ``hubkit.Module(path)`` on a module holding 200 MB of variables (target: under 0.2 s), with the
   resident memory it adds (variables are memory-mapped, so it should stay far below 200 MB), against
   reading the same bytes with ``np.fromfile`` (what a copying loader would at least cost).

Usage: ``.venv/bin/python scripts/bench_module.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import interleaved, load_header

import hubkit as hk


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mlp_module_fn():
    x = hk.placeholder(hk.float32, [None, 784], name="x")
    h = hk.layers.dense(x, 512, activation="relu", name="dense")
    h = hk.layers.dense(h, 512, activation="relu", name="dense_1")
    hk.add_signature(inputs=x, outputs=hk.layers.dense(h, 10, name="logits"))


def bench_call(root: str, repeats: int) -> None:
    path = os.path.join(root, "mlp")
    hk.Module(hk.create_module_spec(mlp_module_fn)).export(path)
    m = hk.Module(path)
    # The baseline runs the same graph the module runs, through the public Session API.
    graph = m._graph
    sess = hk.Session(graph)
    sig = m._variant.signature(None)
    x_t = m._eager_tensors[sig.inputs["default"].name]
    y_t = m._eager_tensors[sig.outputs["default"].name]
    print("Eager call of a loaded 784-512-512-10 MLP module vs Session.run of the same graph")
    print(f"{'batch':>6} {'m(x) median':>13} {'Session.run':>13} {'ratio':>7}  (min ratio)  target")
    for batch in (1, 64):
        x = np.random.default_rng(0).standard_normal((batch, 784)).astype(np.float32)
        np.testing.assert_array_equal(m(x), sess.run(y_t, {x_t: x}))
        inner = 200 if batch == 1 else 20
        res = interleaved({"module": lambda x=x: m(x), "session": lambda x=x: sess.run(y_t, {x_t: x})}, repeats, inner)
        (mmin, mm), (smin, sm) = res["module"], res["session"]
        target = "<= 1.3x" if batch == 1 else ""
        print(f"{batch:>6} {mm * 1e6:>10.1f} us {sm * 1e6:>10.1f} us {mm / sm:>6.2f}x  ({mmin / smin:.2f}x)  {target}")


def bench_load(root: str, repeats: int, megabytes: int) -> None:
    n = megabytes * 1024 * 1024 // 4 // 2

    def big_module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        a = hk.get_variable("a", [n], initializer=hk.initializers.zeros())
        b = hk.get_variable("b", [n // 1024, 1024], initializer=hk.initializers.ones())
        hk.add_signature(inputs=x, outputs=x + a[0] + b[0, 0])

    path = os.path.join(root, "big")
    hk.Module(hk.create_module_spec(big_module_fn)).export(path)
    size = os.path.getsize(os.path.join(path, "variables", "variables.safetensors"))
    times, growth = [], []
    for _ in range(repeats):
        rss = _rss()
        t0 = time.perf_counter()
        m = hk.Module(path)
        times.append(time.perf_counter() - t0)
        growth.append(_rss() - rss)
        assert m([1.0]).tolist() == [2.0]
        del m
    t0 = time.perf_counter()
    np.fromfile(os.path.join(path, "variables", "variables.safetensors"), dtype=np.uint8)
    read = time.perf_counter() - t0
    print(f"\nModule(path) with {size / 1e6:.0f} MB of variables ({repeats} loads)")
    print(f"  median {statistics.median(times) * 1e3:.1f} ms, min {min(times) * 1e3:.1f} ms (target < 200 ms); "
          f"resident memory added: {max(growth) / 1e6:.1f} MB")
    print(f"  baseline np.fromfile of the same file: {read * 1e3:.1f} ms "
          f"(Module(path) takes {statistics.median(times) / read:.3f}x of it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and 50 MB instead of 200 MB")
    args = parser.parse_args()
    print(load_header())
    with tempfile.TemporaryDirectory() as root:
        bench_call(root, repeats=5 if args.quick else 15)
        bench_load(root, repeats=3 if args.quick else 7, megabytes=50 if args.quick else 200)


if __name__ == "__main__":
    main()
