"""ONNX benchmark: hubkit running imported CNN topologies against onnxruntime on the same model and input.

The onnx package's SqueezeNet, ResNet-50, DenseNet-121 and Inception v1 (random weights put in) at batch 1
and 16. Both engines get the same thread count (``--threads``, default 1: BLAS threads for hubkit, intra-op
threads for onnxruntime) and are timed interleaved in one process (``scripts/_timing.py``), so load from
other work on the machine falls on both. Reported: min and median seconds per call and the ratios
hubkit / onnxruntime of the minima and of the medians. Then, per model and batch, the heaviest steps of
hubkit's optimised plan (``--layers N``, default 5; 0 to skip): each one's fastest time and, for
convolutions, the achieved GFLOP/s (direct-convolution FLOPs) against the BLAS's sgemm peak measured
in the same run (a 1024-cube float32 GEMM, ``np.matmul(..., out=)``). ``--layout`` also times one
convolution in the NCHW form the importer uses (``OnnxConv``, unoptimised) against hubkit's NHWC
``Conv2D`` with a transpose on each side. ``--tile-ab`` also times hubkit with the tile-GEMM convolutions
(``hubkit/ops/_conv_tile.py``) off, interleaved in the same process, and prints the ratio.

Usage: ``.venv/bin/python scripts/bench_onnx.py [--threads 1] [--repeats 3] [--models squeezenet,...]
[--batches 1,16] [--layers 5] [--layout] [--clock cpu] [--tile-ab]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _threads_from_argv() -> str:
    argv = sys.argv[1:]
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


# BLAS reads these when numpy is first imported: set them before anything imports numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _timing import SPIN_PAUSE, interleaved, load_header  # noqa: E402

import hubkit as hk  # noqa: E402

MODELS = ["squeezenet", "resnet50", "densenet121", "inception_v1"]


def sgemm_peak(repeats: int = 10, n: int = 1024) -> float:
    """GFLOP/s of the BLAS's float32 GEMM on an ``n``-cube (fastest of ``repeats``), in this process."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    c = np.empty((n, n), np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def timed_steps(module, feed: dict, repeats: int, clock, describe) -> list[tuple[float, object]]:
    """(fastest seconds, ``describe(fn, node, args, result)`` of the first run) of each step of ``module``'s
    optimised default plan, run step by step as the executor would."""
    sig = module._variant.signature(None)
    plan, in_keys, _ = module._plans.get((sig.name, True)) or module._compile(sig, True)
    best: list[float] = []
    info: list[object] = []
    for rep in range(max(1, repeats)):
        values = plan.template.copy()
        for slot, var in plan.var_reads:
            values[slot] = var.value
        for slot, key in zip(plan.feed_slots, in_keys):
            values[slot] = feed[key]
        for i, (fn, kwargs, ins, outs, frees, node) in enumerate(plan.steps):
            args = [values[k] for k in ins]
            t0 = clock()
            res = fn(*args, **kwargs)
            dt = clock() - t0
            if len(outs) == 1:
                values[outs[0]] = res
            else:
                for o, r in zip(outs, res):
                    values[o] = r
            for k in frees:
                values[k] = None
            if rep == 0:
                best.append(dt)
                info.append(describe(fn, node, args, res))
            else:
                best[i] = min(best[i], dt)
    return list(zip(best, info))


def plan_layers(module, feed: dict, repeats: int, clock=None) -> list[tuple[float, float, str, str]]:
    """(fastest seconds, FLOPs or 0, description, kind) of each step of ``module``'s optimised default plan."""
    from hubkit.runtime.optimize import _step_label
    from hubkit.runtime.optimize_conv import FusedOnnxConv
    from hubkit.runtime.optimize_layout import NhwcConv

    def describe(fn, node, args, res) -> tuple[float, str, str]:
        label = _step_label(fn, node)
        flops = 0.0
        kind = label
        if isinstance(fn, (FusedOnnxConv, NhwcConv)):
            prep = args[1]
            nhwc = isinstance(fn, NhwcConv)  # channels-last: (N, H, W, C)
            x_chw = tuple(args[0].shape[i] for i in ((3, 1, 2) if nhwc else (1, 2, 3)))
            m, oh = (res.shape[3], res.shape[1]) if nhwc else (res.shape[1], res.shape[2])
            flops = 2.0 * res.size * prep.w2.shape[1]
            label += f" {x_chw} k{prep.kernel} s{tuple(fn.attrs['strides'])} -> {m}"
            kind = f"conv k{prep.kernel[0]}x{prep.kernel[1]} s{fn.attrs['strides'][0]}"
            if prep.kernel == (3, 3) and tuple(fn.attrs["strides"]) == (1, 1):
                kind += f" {'<14' if oh < 14 else '>=14'}"
        return flops, label, kind

    steps = timed_steps(module, feed, repeats, clock or time.perf_counter, describe)
    return [(t, f, lab, kind) for t, (f, lab, kind) in steps]  # type: ignore[misc]


def _without_tile(fn):
    """``fn()`` with the tile-GEMM convolutions (``hubkit/ops/_conv_tile.py``) switched off: the NCHW path runs."""
    from hubkit.ops import _conv_tile

    names = ("MAX_PIXELS", "MAX_PIXELS_STRIDED", "MAX_PIXELS_POINTWISE")
    saved = [getattr(_conv_tile, n) for n in names]
    for n in names:
        setattr(_conv_tile, n, 0)
    try:
        return fn()
    finally:
        for n, v in zip(names, saved):
            setattr(_conv_tile, n, v)


def bench_models(
    models: list[str], batches: list[int], threads: int, repeats: int, layers: int, clock=None, tile_ab=False
) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from tests.importers.onnx.onnx_helpers import light_model

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    peak = sgemm_peak() if layers else 0.0
    if layers:
        print(f"BLAS sgemm peak (1024^3 float32, fastest of 10, this run): {peak:.1f} GFLOP/s")
    print(f"{'model':<14} {'batch':>5} {'hubkit min/med (ms)':>20} {'ORT min/med (ms)':>18} {'ratio min/med':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            base = light_model(name)
            for batch in batches:
                model = onnx.ModelProto()
                model.CopyFrom(base)  # onnx.save with external data rewrites the model it is given
                del model.graph.value_info[:]  # recorded shapes are for batch 1
                inits = {t.name: t for t in model.graph.initializer}
                for node in model.graph.node:  # Reshape targets baked for batch 1: 0 keeps the batch instead
                    if node.op_type == "Reshape" and node.input[1] in inits:
                        target = numpy_helper.to_array(inits[node.input[1]]).copy()
                        if target.size and target[0] == 1:
                            target[0] = 0
                            inits[node.input[1]].CopyFrom(numpy_helper.from_array(target, node.input[1]))
                for vi in (model.graph.input[0], *model.graph.output):
                    dim = vi.type.tensor_type.shape.dim[0]
                    dim.Clear()
                    dim.dim_value = batch
                path = os.path.join(tmp, f"{name}_{batch}", "model.onnx")
                os.makedirs(os.path.dirname(path))
                onnx.save(model, path, save_as_external_data=True, location="weights.bin")
                module = hk.Module(path)
                (key,) = module.get_input_info_dict()
                x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
                session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                feed = {model.graph.input[0].name: x}
                fns = {"hubkit": lambda m=module, k=key, x=x: m({k: x}, as_dict=True),
                       "ort": lambda s=session, f=feed: s.run(None, f)}
                if tile_ab:  # each hubkit contender right after an onnxruntime call: the same cache state before both
                    fns["no tile"] = lambda m=module, k=key, x=x: _without_tile(lambda: m({k: x}, as_dict=True))
                    fns["ort again"] = fns["ort"]
                t = interleaved(fns, repeats=repeats, inner=1, pause=0.0 if threads == 1 else SPIN_PAUSE,
                                clock=clock or time.perf_counter, rewarm=0 if threads == 1 else 1)
                h, o = t["hubkit"], t["ort"]
                ab = f"   tile/no tile {h.best / t['no tile'].best:.3f} / {h.median / t['no tile'].median:.3f}" if tile_ab else ""
                print(f"{name:<14} {batch:>5} {h.best * 1e3:>9.2f} / {h.median * 1e3:<8.2f} {o.best * 1e3:>8.2f} / {o.median * 1e3:<7.2f} "
                      f"{h.best / o.best:>6.2f}x / {h.median / o.median:.2f}x{ab}", flush=True)
                if layers:
                    rows = plan_layers(module, {key: x}, repeats, clock)
                    total = sum(t for t, _, _, _ in rows)
                    kinds: dict[str, list[float]] = {}
                    for t, flops, _, kind in rows:
                        kinds.setdefault(kind, [0.0, 0.0, 0.0])
                        kinds[kind][0] += t
                        kinds[kind][1] += flops
                        kinds[kind][2] += 1
                    print(f"    steps' fastest times sum to {total * 1e3:.2f} ms = {total / o.best:.2f}x ORT's fastest call; "
                          "by kind (ms, share, GFLOP/s):")
                    for kind, (t, flops, count) in sorted(kinds.items(), key=lambda kv: -kv[1][0])[:8]:
                        rate = f"{flops / t / 1e9:6.1f}" if flops else ""
                        print(f"      {t * 1e3:8.2f} {t / total:4.0%} {rate:>6}  {kind} (x{count:.0f})")
                    for t, flops, label, _ in sorted(rows, key=lambda r: -r[0])[:layers]:
                        rate = f"{flops / t / 1e9:6.1f} GFLOP/s = {flops / t / 1e9 / peak:4.0%} of peak" if flops else ""
                        print(f"    {t * 1e3:8.2f} ms {t / total:4.0%}  {rate:<32} {label}", flush=True)


def bench_layout(repeats: int) -> None:
    """One 3x3 convolution: NCHW OnnxConv against NHWC Conv2D wrapped in two transposes."""
    from hubkit.ops.registry import apply

    print(f"{'conv (N,C,H,W)->M':<28} {'NCHW OnnxConv':>14} {'T+Conv2D+T':>12} {'ratio':>7}")
    for n, c, hw, m in [(1, 64, 56, 64), (1, 256, 14, 256), (16, 64, 56, 64), (16, 3, 224, 64)]:
        g = hk.Graph()
        with g.as_default():
            x = hk.placeholder(hk.float32, [n, c, hw, hw])
            w = np.random.default_rng(0).standard_normal((m, c, 3, 3)).astype(np.float32)
            nchw = apply("OnnxConv", x, hk.constant(w), strides=[1, 1], dilations=[1, 1], pads=[1, 1, 1, 1])
            nhwc = hk.transpose(hk.nn.conv2d(hk.transpose(x, [0, 2, 3, 1]), hk.constant(w.transpose(2, 3, 1, 0)),
                                             strides=1, padding="SAME"), [0, 3, 1, 2])
        sess = hk.Session(g)
        xv = np.random.default_rng(1).standard_normal((n, c, hw, hw)).astype(np.float32)
        np.testing.assert_allclose(sess.run(nchw, {x: xv}), sess.run(nhwc, {x: xv}), rtol=1e-3, atol=1e-3)
        feeds = {x: xv}
        t = interleaved({"nchw": lambda s=sess, y=nchw, f=feeds: s.run(y, f),
                         "nhwc": lambda s=sess, y=nhwc, f=feeds: s.run(y, f)}, repeats=repeats, inner=1)
        print(f"{f'({n},{c},{hw},{hw})->{m}':<28} {t['nchw'].median:>13.4f}s {t['nhwc'].median:>11.4f}s "
              f"{t['nchw'].median / t['nhwc'].median:>6.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--layers", type=int, default=5, help="heaviest plan steps shown per model and batch")
    parser.add_argument("--layout", action="store_true", help="also time NCHW against transposed NHWC convolution")
    parser.add_argument("--no-models", action="store_true", help="skip the model comparison")
    parser.add_argument("--tile-ab", action="store_true",
                        help="also time hubkit with the tile-GEMM convolutions off, interleaved (same process)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time (steadier on a shared machine; one thread only)")
    args = parser.parse_args(argv)
    print(load_header(), f"; {args.threads} thread(s) each")
    if args.layout:
        bench_layout(args.repeats)
    if not args.no_models:
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        bench_models(args.models.split(","), [int(b) for b in args.batches.split(",")], args.threads, args.repeats,
                     args.layers, clock, args.tile_ab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
