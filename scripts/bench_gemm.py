"""GFLOP/s of hubkit's LLVM tile GEMM against np.matmul and onnxruntime's MatMul, one thread each.

Shapes: the MLP's layers (784-512-512-10) at batch 1, 64 and 4096, as ``x @ W`` with ``W`` packed
once (``hubkit/ops/_packed_gemm.py``; packing is not timed; the fused dense step uses the kernel for
9+ rows, ``N`` and ``K`` >= 64 only). np.matmul writes into a preallocated ``out=``; onnxruntime runs
a one-node ``MatMul`` graph whose ``W`` is an initializer, so it packs it once at session creation
as it does in a model. (1x1 convolutions of ResNet-50 and SqueezeNet, ``W[Cout, Cin] @ X[Cin, HW]``
with ``X`` read in place, were measured with an earlier form of the kernel, 0.67-1.11x np.matmul,
and are not part of hubkit.)

Samples are interleaved (``scripts/_timing.py``), CPU time of the process, a short pause before each
so onnxruntime's spinning threads are idle; min and median GFLOP/s and the ratios
kernel / np.matmul and kernel / onnxruntime (above 1: the kernel is faster) are printed.

Usage: ``python scripts/bench_gemm.py [--repeats 7] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved, load_header  # noqa: E402

DENSE = [(b, k, n) for b in (1, 64, 4096) for k, n in ((784, 512), (512, 512), (512, 10))]
"""(M, K, N) of ``x @ W``: the MLP's three layers at batch 1, 64, 4096."""

def _ort_matmul(const: np.ndarray, other_shape: tuple[int, int]):
    out_shape = [other_shape[0], const.shape[1]]
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["x", "W"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", inputs, ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(other_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(const, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _row(label: str, flops: float, res, names: tuple[str, str, str]) -> None:
    ours, base, ort = names
    g = {k: (flops / t.best / 1e9, flops / t.median / 1e9) for k, t in res.items()}
    parts = [f"{k} {g[k][0]:6.1f} ({g[k][1]:6.1f})" for k in res]
    ratios = f"x np {res[base].best / res[ours].best:4.2f} ({res[base].median / res[ours].median:4.2f})"
    if ort in res:
        ratios += f"  x ort {res[ort].best / res[ours].best:4.2f} ({res[ort].median / res[ours].median:4.2f})"
    print(f"{label:38s} " + "  ".join(parts) + "  | " + ratios, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="samples per contender (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 samples, shorter ones (a smoke run)")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds of sleep before each sample")
    parser.add_argument("--no-ort", action="store_true", help="leave onnxruntime out")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    target = 0.002 if args.quick else 0.01  # seconds of work per sample

    from hubkit.ops import _packed_gemm

    print(load_header())
    t0 = time.perf_counter()
    ok = _packed_gemm.available()
    print(f"kernel available: {ok} (first use, compile or cache load: {time.perf_counter() - t0:.2f} s); "
          f"numpy {np.__version__}; GFLOP/s min-time (median-time), one thread, CPU clock", flush=True)
    if not ok:
        return 1
    rng = np.random.default_rng(0)
    names = ("kernel", "np.matmul", "ort")
    print("== dense x[M,K] @ W[K,N], W packed once")
    for m, k, n in DENSE:
        x = rng.standard_normal((m, k), np.float32)
        w = rng.standard_normal((k, n), np.float32)
        packed = _packed_gemm.pack_weights(w)
        out_k = np.empty((m, n), np.float32)
        out_n = np.empty((m, n), np.float32)
        fns = {
            "kernel": lambda x=x, p=packed, o=out_k, n=n: _packed_gemm.packed_matmul(x, p, n, out=o),
            "np.matmul": lambda x=x, w=w, o=out_n: np.matmul(x, w, out=o),
        }
        if not args.no_ort:
            sess = _ort_matmul(w, (m, k))
            fns["ort"] = lambda s=sess, x=x: s.run(None, {"x": x})
        flops = 2.0 * m * k * n
        inner = max(1, int(target * 50e9 / flops))
        res = interleaved(fns, repeats, inner, warmup=2, pause=args.pause, clock=time.process_time)
        _row(f"{m}x{k} @ {k}x{n}", flops, res, names)
    print(load_header())
    return 0


if __name__ == "__main__":
    sys.exit(main())
