"""Control-flow benchmark: ``while_loop`` and ``map_fn`` against the same Python loop of NumPy calls.

- ``while_loop``: 10,000 iterations of a scalar recurrence, ``(i, x) -> (i + 1, x * a + b)`` while
  ``i < n``. Baseline: a Python ``while`` loop making the same NumPy calls (``np.less``, ``np.add``,
  ``np.multiply``) on 0-d arrays.
- ``map_fn``: 1,000 rows of 16 floats, ``row -> sum(tanh(row * w))``. Baseline: a Python ``for`` loop
  over the rows making the same NumPy calls, then ``np.stack``.

Both run in one process, interleaved (scripts/_timing.py); the ratio hubkit / NumPy is the figure
that matters (target: within 2x, i.e. a per-iteration overhead of a few microseconds).

Usage: ``.venv/bin/python scripts/bench_control_flow.py [--quick]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import interleaved, load_header

import hubkit as hk

TARGET = 2.0


def while_case(n: int):
    a, b = np.float64(0.999), np.float64(0.5)
    g = hk.Graph()
    with g.as_default():
        _, x = hk.while_loop(lambda i, x: i < n, lambda i, x: (i + 1, x * a + b),
                             [hk.constant(0), hk.constant(np.float64(1.0))])
    sess = hk.Session(g)

    def numpy_loop():
        i, x, limit, one = np.int32(0), np.float64(1.0), np.int32(n), np.int32(1)
        while np.less(i, limit):
            i = np.add(i, one)
            x = np.add(np.multiply(x, a), b)
        return x

    assert np.isclose(sess.run(x), numpy_loop())
    return {"hubkit": lambda: sess.run(x), "numpy": numpy_loop}


def map_case(rows: int):
    data = np.random.default_rng(0).standard_normal((rows, 16)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        elems = hk.placeholder(hk.float32, [None, 16])
        out = hk.map_fn(lambda r: hk.reduce_sum(hk.tanh(r * w)), elems)
    sess = hk.Session(g)

    def numpy_loop():
        return np.stack([np.sum(np.tanh(np.multiply(row, w))) for row in data])

    np.testing.assert_allclose(sess.run(out, {elems: data}), numpy_loop(), rtol=1e-5)
    return {"hubkit": lambda: sess.run(out, {elems: data}), "numpy": numpy_loop}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    print(load_header())
    worst = 0.0
    for label, fns, per in (("while_loop, 10,000 iterations", while_case(10_000), 10_000),
                            ("map_fn, 1,000 rows", map_case(1_000), 1_000)):
        t = interleaved(fns, repeats=repeats, inner=1)
        ratio = t["hubkit"].best / t["numpy"].best
        worst = max(worst, ratio)
        print(f"{label}: hubkit {t['hubkit'].best * 1e3:.2f} ms ({t['hubkit'].best / per * 1e6:.2f} us/iteration), "
              f"NumPy loop {t['numpy'].best * 1e3:.2f} ms ({t['numpy'].best / per * 1e6:.2f} us/iteration), "
              f"ratio {ratio:.2f}x (target <= {TARGET}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
