"""Benchmark: ``Model.fit`` on the 784-64-64-10 MLP at batch 64 against a hand-written NumPy training loop.

Both sides do the same math per batch: ReLU MLP forward, softmax cross-entropy, backward, one Adam
step (TensorFlow 1's update), and shuffle the data once per epoch. The figures are samples per second
(best of several epochs) and the per-batch overhead of ``fit`` over the NumPy loop.

    .venv/bin/python scripts/bench_fit.py [--examples 6400] [--epochs 5] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import hubkit as hk


def numpy_fit(params, xs, ys, batch, epochs, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """The reference loop; returns the best epoch time."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    best = float("inf")
    n = len(xs)
    for epoch in range(epochs):
        start = time.perf_counter()
        order = np.random.default_rng([0, epoch]).permutation(n)
        ex, ey = xs[order], ys[order]
        for s in range(0, n, batch):
            x, y = ex[s : s + batch], ey[s : s + batch]
            w1, b1_, w2, b2_, w3, b3 = params
            h1 = np.maximum(x @ w1 + b1_, 0)
            h2 = np.maximum(h1 @ w2 + b2_, 0)
            logits = h2 @ w3 + b3
            z = logits - logits.max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            g = p
            g[np.arange(len(y)), y] -= 1
            g /= len(y)
            gw3, gb3 = h2.T @ g, g.sum(0)
            g2 = (g @ w3.T) * (h2 > 0)
            gw2, gb2 = h1.T @ g2, g2.sum(0)
            g1 = (g2 @ w2.T) * (h1 > 0)
            gw1, gb1 = x.T @ g1, g1.sum(0)
            t += 1
            lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            for i, grad in enumerate((gw1, gb1, gw2, gb2, gw3, gb3)):
                m[i] *= b1
                m[i] += (1 - b1) * grad
                v[i] *= b2
                v[i] += (1 - b2) * grad * grad
                params[i] -= (lr_t * m[i] / (np.sqrt(v[i]) + eps)).astype(np.float32)
        best = min(best, time.perf_counter() - start)
    return best


def hubkit_fit(xs, ys, batch, epochs):
    """Model.fit, one epoch per call; returns (best epoch time, the model)."""
    x = hk.Input((784,))
    h = hk.layers.Dense(64, activation="relu")(x)
    h = hk.layers.Dense(64, activation="relu")(h)
    model = hk.Model(x, hk.layers.Dense(10)(h))
    model.compile(hk.train.Adam(1e-3), "sparse_softmax_cross_entropy")
    model.fit(xs[:batch], ys[:batch], batch_size=batch, epochs=1, verbose=0)  # builds the training graph
    best = float("inf")
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0)
        best = min(best, time.perf_counter() - start)
    return best, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(args.examples, 784)).astype(np.float32)
    ys = rng.integers(0, 10, size=args.examples).astype(np.int64)
    t_fit, model = hubkit_fit(xs, ys, args.batch, args.epochs)
    params = [v.numpy() for v in model.variables]
    t_np = numpy_fit(params, xs, ys, args.batch, args.epochs)
    batches = -(-args.examples // args.batch)
    print(f"MLP 784-64-64-10, Adam, batch {args.batch}, {args.examples} examples ({batches} batches) per epoch")
    print(f"  NumPy loop : {args.examples / t_np:10.0f} samples/s  ({1e6 * t_np / batches:7.1f} us/batch)")
    print(f"  Model.fit  : {args.examples / t_fit:10.0f} samples/s  ({1e6 * t_fit / batches:7.1f} us/batch)")
    print(f"  ratio fit/NumPy throughput: {t_np / t_fit:.2f}x (target >= 0.70x)")
    print(f"  per-batch overhead of fit : {1e6 * (t_fit - t_np) / batches:.1f} us")


if __name__ == "__main__":
    main()
