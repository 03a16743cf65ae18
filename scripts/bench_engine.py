"""Engine benchmark: an MLP 784-512-512-10 (ReLU) run by ``Session.run`` against baselines, in one process.

Inference at batch 1, 64 and 4096: hubkit vs a hand-written NumPy forward pass with the same
weights, and vs onnxruntime on the same weights when ``onnx`` and ``onnxruntime`` import. Training:
one Adam step at batch 256 (softmax cross-entropy) vs hand-written NumPy forward + backward + Adam.
Implementations are interleaved, each timed over many repeats; the reported time is the minimum
(and the median) per call, and ratios are taken against NumPy measured in the same run.

Targets (issue 2): batch 1 within 1.3x of NumPy, batch 64 and 4096 within 1.05x, training step
within 1.5x. When Numba is enabled the MLP's plan is fused (``bias_add + relu``); at batch 1 the
fused plan is also timed against the same plan unfused (``plan.unfused``), both through ``Plan.run``.

``--overhead`` instead measures the executor's own cost: ``Session.run`` of chains of N ``Add``
steps (``h = h + h`` on a 4-element array, compiled without fusion) against the same N ``np.add``
calls, for several N; the least-squares line through (N, hubkit - NumPy) gives the per-call and
the per-step overhead. N = 0 is ``Session.run`` fetching its fed placeholder (a plan of no steps).

Usage: ``.venv/bin/python scripts/bench_engine.py [--quick] [--overhead]``
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import interleaved, load_header

import hubkit as hk
from hubkit.ops import _numba

SIZES = (784, 512, 512, 10)
TARGETS = {1: 1.3, 64: 1.05, 4096: 1.05, "train": 1.5}


def make_weights(rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for n_in, n_out in itertools.pairwise(SIZES):
        out.append((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32))
        out.append((rng.standard_normal(n_out) * 0.1).astype(np.float32))
    return out


# -- hand-written NumPy baselines --------------------------------------------------------------------
def numpy_forward(x: np.ndarray, w: list[np.ndarray]) -> np.ndarray:
    h = np.maximum(x @ w[0] + w[1], 0)
    h = np.maximum(h @ w[2] + w[3], 0)
    return h @ w[4] + w[5]


class NumpyAdamMLP:
    """Forward, backward (softmax cross-entropy) and TF1's Adam update, written by hand in NumPy."""

    def __init__(self, w: list[np.ndarray], lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8) -> None:
        self.w = [p.copy() for p in w]
        self.m = [np.zeros_like(p) for p in w]
        self.v = [np.zeros_like(p) for p in w]
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.t = 0

    def step(self, x: np.ndarray, labels: np.ndarray) -> float:
        w = self.w
        z1 = x @ w[0] + w[1]
        h1 = np.maximum(z1, 0)
        z2 = h1 @ w[2] + w[3]
        h2 = np.maximum(z2, 0)
        logits = h2 @ w[4] + w[5]
        shifted = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        n = x.shape[0]
        loss = float(np.mean(np.log(s[:, 0]) - shifted[np.arange(n), labels]))
        g = e / s
        g[np.arange(n), labels] -= 1
        g /= n
        grads = [None] * 6
        grads[4], grads[5] = h2.T @ g, g.sum(0)
        g = (g @ w[4].T) * (z2 > 0)
        grads[2], grads[3] = h1.T @ g, g.sum(0)
        g = (g @ w[2].T) * (z1 > 0)
        grads[0], grads[1] = x.T @ g, g.sum(0)
        self.t += 1
        lr_t = self.lr * np.sqrt(1 - self.b2**self.t) / (1 - self.b1**self.t)
        for p, gp, m, v in zip(w, grads, self.m, self.v):
            m += (1 - self.b1) * (gp - m)
            v += (1 - self.b2) * (gp * gp - v)
            p -= lr_t * m / (np.sqrt(v) + self.eps)
        return loss


# -- hubkit ----------------------------------------------------------------------------------------
def hubkit_mlp(w: list[np.ndarray]):
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, SIZES[0]], name="x")
        labels = hk.placeholder(hk.int64, [None], name="labels")
        h = x
        for i in range(3):
            h = hk.layers.dense(h, SIZES[i + 1], activation="relu" if i < 2 else None)
        loss = hk.losses.sparse_softmax_cross_entropy(labels, h)
        train_op = hk.train.Adam(1e-3).minimize(loss)
    for var, value in zip(g.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES), w):
        var.assign(value)
    return g, x, labels, h, loss, train_op


# -- onnxruntime -----------------------------------------------------------------------------------
def onnx_session(w: list[np.ndarray]):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    names = ["W1", "b1", "W2", "b2", "W3", "b3"]
    inits = [numpy_helper.from_array(a, n) for a, n in zip(w, names)]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["h1"]),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"]),
        helper.make_node("Relu", ["z2"], ["h2"]),
        helper.make_node("Gemm", ["h2", "W3", "b3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", SIZES[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    # Idle onnxruntime threads spin by default, stealing the cores NumPy's BLAS runs on next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def bench_overhead(scale: float) -> None:
    """Per-call and per-step cost of ``Session.run`` over the same ``np.add`` calls made directly."""
    lengths = (0, 1, 4, 16, 64)
    value = np.ones(4, np.float32)
    fns: dict[tuple[str, int], Callable[[], object]] = {}
    previous = _numba.numba_enabled()
    _numba.set_numba_enabled(False)  # plans compiled below stay unfused: every Add is its own step
    for n in lengths:
        g = hk.Graph()
        with g.as_default():
            x = hk.placeholder(hk.float32, [None], name="x")
            h = x
            for _ in range(n):
                h = h + h
        sess = hk.Session(g)
        np.testing.assert_array_equal(sess.run(h, {x: value}), value * 2.0**n)  # compiles and caches the plan

        def direct(n: int = n) -> np.ndarray:
            v = value
            for _ in range(n):
                v = np.add(v, v)
            return v

        fns[("numpy", n)] = direct
        fns[("hubkit", n)] = lambda sess=sess, h=h, x=x: sess.run(h, {x: value})
    res = interleaved(fns, max(5, int(30 * scale)), 500, warmup=50)
    _numba.set_numba_enabled(None if previous else False)
    print("Session.run of a chain of N Add steps vs N np.add calls (4 elements), min (median) per call:")
    extra = []
    for n in lengths:
        ours, base = res[("hubkit", n)], res[("numpy", n)]
        extra.append(ours.best - base.best)
        print(f"  N = {n:>2}: numpy {base.best * 1e6:6.2f} us ({base.median * 1e6:.2f} us) | hubkit {ours.best * 1e6:6.2f} us "
              f"({ours.median * 1e6:.2f} us) | overhead {(ours.best - base.best) * 1e6:.2f} us")
    slope, intercept = np.polyfit(np.array(lengths, float), np.array(extra), 1)
    print(f"least squares over N: Session.run costs {intercept * 1e6:.2f} us per call + {slope * 1e6:.2f} us per "
          f"plan step over the kernels (N = 0, a plan of no steps: {res[('hubkit', 0)].best * 1e6:.2f} us)")


def bench_fusion_batch1(sess: hk.Session, x: hk.Tensor, logits: hk.Tensor, w: list[np.ndarray], scale: float) -> None:
    """The MLP's fused plan vs the same plan unfused at batch 1, both through ``Plan.run``."""
    plan = sess.plan([logits], [x])
    if plan.unfused is None:
        print("MLP plan at batch 1: not fused (Numba off or nothing to fuse)")
        return
    data = np.random.default_rng(1).standard_normal((1, SIZES[0])).astype(np.float32)
    np.testing.assert_array_equal(plan.run([data])[0], plan.unfused.run([data])[0])
    fns: dict[str, Callable[[], object]] = {
        "numpy": lambda: numpy_forward(data, w),
        "unfused": lambda: plan.unfused.run([data]),  # type: ignore[union-attr]
        "fused": lambda: plan.run([data]),
    }
    res = interleaved(fns, max(3, int(60 * scale)), 200, warmup=50)
    fused, unfused = res["fused"].best, res["unfused"].best
    print(f"MLP plan at batch 1 ({len(plan.unfused.steps)} steps unfused, {len(plan.steps)} fused), Plan.run: "
          f"unfused {fmt(unfused).strip()} -> fused {fmt(fused).strip()} (fused/unfused {fused / unfused:.3f}x, "
          f"{(fused - unfused) * 1e6:+.1f} us); numpy {fmt(res['numpy'].best).strip()}")


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:9.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier)")
    parser.add_argument("--overhead", action="store_true", help="per-call and per-step cost of Session.run instead")
    args = parser.parse_args(argv)
    scale = 0.2 if args.quick else 1.0
    print(load_header())
    if args.overhead:
        bench_overhead(scale)
        return 0
    rng = np.random.default_rng(0)
    w = make_weights(rng)
    g, x, labels, logits, loss, train_op = hubkit_mlp(w)
    sess = hk.Session(g)
    ort_sess = onnx_session(w)
    print(f"hubkit {hk.__version__}, numpy {np.__version__}, onnxruntime: {'yes' if ort_sess else 'not installed'}")
    print(f"MLP {'-'.join(map(str, SIZES))} ReLU, float32; times are min (median) per call\n")
    ok = True
    for batch, repeats, inner in ((1, 60, 200), (64, 40, 50), (4096, 15, 2)):
        data = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
        expected = numpy_forward(data, w)
        got = sess.run(logits, {x: data})
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        fns: dict[str, Callable[[], object]] = {
            "numpy": lambda d=data: numpy_forward(d, w),
            "hubkit": lambda d=data: sess.run(logits, {x: d}),
        }
        if ort_sess is not None:
            fns["onnxruntime"] = lambda d=data: ort_sess.run(None, {"x": d})
        res = interleaved(fns, max(3, int(repeats * scale)), inner, warmup=max(2, inner // 4))
        base = res["numpy"][0]
        ratio = res["hubkit"][0] / base
        target = TARGETS[batch]
        ok &= ratio <= target
        line = f"batch {batch:>5}: numpy {fmt(base)} ({fmt(res['numpy'][1]).strip()})"
        line += f" | hubkit {fmt(res['hubkit'][0])} ({fmt(res['hubkit'][1]).strip()}) = {ratio:.3f}x numpy"
        line += f" [target <= {target}x: {'ok' if ratio <= target else 'MISSED'}]"
        if ort_sess is not None:
            line += f" | onnxruntime {fmt(res['onnxruntime'][0])} = hubkit/ort {res['hubkit'][0] / res['onnxruntime'][0]:.2f}x"
        print(line)
        if batch == 1:
            bench_fusion_batch1(sess, x, logits, w, scale)

    batch = 256
    data = rng.standard_normal((batch, SIZES[0])).astype(np.float32)
    lab = rng.integers(0, SIZES[-1], batch).astype(np.int64)
    ref = NumpyAdamMLP(w)
    # Same start, same data: a few steps must agree before timing means anything.
    for _ in range(3):
        ref_loss = ref.step(data, lab)
        hk_loss, _ = sess.run([loss, train_op], {x: data, labels: lab})
    if not np.isclose(ref_loss, hk_loss, rtol=1e-3):
        print(f"training mismatch: numpy loss {ref_loss:.6f} vs hubkit {hk_loss:.6f}")
        return 1
    fns = {
        "numpy": lambda: ref.step(data, lab),
        "hubkit": lambda: sess.run(train_op, {x: data, labels: lab}),
    }
    res = interleaved(fns, max(3, int(40 * scale)), 5, warmup=2)
    ratio = res["hubkit"][0] / res["numpy"][0]
    ok &= ratio <= TARGETS["train"]
    print(
        f"Adam step, batch {batch}: numpy {fmt(res['numpy'][0])} ({fmt(res['numpy'][1]).strip()}) | hubkit "
        f"{fmt(res['hubkit'][0])} ({fmt(res['hubkit'][1]).strip()}) = {ratio:.3f}x numpy "
        f"[target <= {TARGETS['train']}x: {'ok' if ratio <= TARGETS['train'] else 'MISSED'}]"
    )
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
