"""Benchmark: ``Model.fit`` on the 784-64-64-10 MLP at batch 64 against a hand-written NumPy training loop.

Both sides do the same math per batch: ReLU MLP forward, softmax cross-entropy, backward, one Adam
step (TensorFlow 1's update), and shuffle the data once per epoch. The figures are samples per second
(best of several epochs) and the per-batch overhead of ``fit`` over the NumPy loop, split in two:
fit's own loop (shuffling, batch slicing, loss sums, epoch bookkeeping), timed as ``fit`` with its
compiled plan swapped for a no-op against the NumPy loop with a no-op step, and the rest (the
executor running the plan's steps around the same kernels).

    .venv/bin/python scripts/bench_fit.py [--examples 6400] [--epochs 5] [--batch 64] [--wall]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# One BLAS thread by default (override with the environment): on a machine shared with other jobs,
# multithreaded BLAS makes both sides' figures swing by 2x from run to run.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import load_header  # noqa: E402

import hubkit as hk  # noqa: E402


class NumpyLoop:
    """The reference: the same MLP, loss and Adam update written by hand."""

    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.params = params
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

    def step(self, x, y):
        w1, c1, w2, c2, w3, c3 = self.params
        h1 = np.maximum(x @ w1 + c1, 0)
        h2 = np.maximum(h1 @ w2 + c2, 0)
        logits = h2 @ w3 + c3
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = p
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        g2 = (g @ w3.T) * (h2 > 0)
        g1 = (g2 @ w2.T) * (h1 > 0)
        grads = (x.T @ g1, g1.sum(0), h1.T @ g2, g2.sum(0), h2.T @ g, g.sum(0))
        self.t += 1
        b1, b2 = self.b1, self.b2
        lr_t = float(self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t))  # a Python float keeps float32 math
        for p_, m, v, grad in zip(self.params, self.m, self.v, grads):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            p_ -= lr_t * m / (np.sqrt(v) + self.eps)

    def epoch(self, xs, ys, batch, epoch, step=None):
        step = step or self.step
        order = np.random.default_rng([0, epoch]).permutation(len(xs))
        ex, ey = xs[order], ys[order]
        for s in range(0, len(xs), batch):
            step(ex[s : s + batch], ey[s : s + batch])


class NoOpPlan:
    """Stands in for fit's compiled plan: returns fixed outputs, so only fit's own loop is timed."""

    def __init__(self, outputs: int) -> None:
        self.out = [None] + [0.0] * (outputs - 1)

    def run(self, feeds):
        return self.out


def no_op_step(x, y):
    return None


def build_model():
    x = hk.Input((784,))
    h = hk.layers.Dense(64, activation="relu")(x)
    h = hk.layers.Dense(64, activation="relu")(h)
    model = hk.Model(x, hk.layers.Dense(10)(h))
    model.compile(hk.train.Adam(1e-3), "sparse_softmax_cross_entropy")
    return model


def timed(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--wall", dest="cpu_time", action="store_false", help="use wall-clock time, not CPU time")
    args = parser.parse_args()
    print(load_header())
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(args.examples, 784)).astype(np.float32)
    ys = rng.integers(0, 10, size=args.examples).astype(np.int64)
    model = build_model()
    model.fit(xs[: args.batch], ys[: args.batch], batch_size=args.batch, epochs=1, verbose=0)  # builds the graph
    loop = NumpyLoop([v.numpy() for v in model.variables])
    # Interleaved epochs, best of each, on the process's CPU clock: fair on a machine shared with
    # other jobs (wall-clock figures swing with their load).
    clock = time.process_time if args.cpu_time else time.perf_counter
    (program,) = [p for k, p in model._programs.items() if isinstance(k, tuple) and k[0] == "train"]
    plan, no_op = program.plan, NoOpPlan(2 + len(program.names))

    def fit_no_op():
        program.plan = no_op
        try:
            model.fit(xs, ys, batch_size=args.batch, epochs=1, verbose=0)
        finally:
            program.plan = plan

    t_fit = t_np = t_fit_loop = t_np_loop = float("inf")
    for epoch in range(args.epochs):
        t_fit = min(t_fit, timed(lambda: model.fit(xs, ys, batch_size=args.batch, epochs=1, verbose=0), clock))
        t_np = min(t_np, timed(lambda e=epoch: loop.epoch(xs, ys, args.batch, e), clock))
        t_fit_loop = min(t_fit_loop, timed(fit_no_op, clock))
        t_np_loop = min(t_np_loop, timed(lambda e=epoch: loop.epoch(xs, ys, args.batch, e, no_op_step), clock))
    batches = -(-args.examples // args.batch)
    what = "CPU time" if args.cpu_time else "wall-clock time"
    print(f"MLP 784-64-64-10, Adam, batch {args.batch}, {args.examples} examples ({batches} batches) per epoch, "
          f"best of {args.epochs} epochs by {what}")
    print(f"  NumPy loop : {args.examples / t_np:10.0f} samples/s  ({1e6 * t_np / batches:7.1f} us/batch)")
    print(f"  Model.fit  : {args.examples / t_fit:10.0f} samples/s  ({1e6 * t_fit / batches:7.1f} us/batch)")
    print(f"  ratio fit/NumPy throughput: {t_np / t_fit:.2f}x (target >= 0.70x)")
    overhead, own = 1e6 * (t_fit - t_np) / batches, 1e6 * (t_fit_loop - t_np_loop) / batches
    print(f"  per-batch overhead of fit : {overhead:.1f} us")
    print(f"    of which fit's own loop : {own:.1f} us (fit with a no-op plan {1e6 * t_fit_loop / batches:.1f} us/batch "
          f"vs the NumPy loop with a no-op step {1e6 * t_np_loop / batches:.1f} us/batch)")
    print(f"    the rest (executor)     : {overhead - own:.1f} us (the plan runs {len(plan.steps)} steps)")


if __name__ == "__main__":
    main()
