"""ONNX benchmark: hubkit running imported CNN topologies against onnxruntime on the same model and input.

The onnx package's SqueezeNet, ResNet-50, DenseNet-121 and Inception v1 (random weights put in) at batch 1
and 16. Both engines get the same thread count (``--threads``, default 1: BLAS threads for hubkit, intra-op
threads for onnxruntime) and are timed interleaved in one process (``scripts/_timing.py``), so load from
other work on the machine falls on both. Reported: min and median seconds per call and the ratio
hubkit / onnxruntime. ``--layout`` also times one convolution in the NCHW form the importer uses
(``OnnxConv``) against hubkit's NHWC ``Conv2D`` with a transpose on each side.

Usage: ``.venv/bin/python scripts/bench_onnx.py [--threads 1] [--repeats 3] [--models squeezenet,...]
[--batches 1,16] [--layout]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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

from _timing import interleaved, load_header  # noqa: E402

import hubkit as hk  # noqa: E402

MODELS = ["squeezenet", "resnet50", "densenet121", "inception_v1"]


def bench_models(models: list[str], batches: list[int], threads: int, repeats: int) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from tests.importers.onnx.onnx_helpers import light_model

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    print(f"{'model':<14} {'batch':>5} {'hubkit min/med (s)':>20} {'ORT min/med (s)':>18} {'ratio (med)':>11}")
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
                t = interleaved({"hubkit": lambda m=module, k=key, x=x: m({k: x}, as_dict=True),
                                 "ort": lambda s=session, f=feed: s.run(None, f)}, repeats=repeats, inner=1)
                h, o = t["hubkit"], t["ort"]
                print(f"{name:<14} {batch:>5} {h.best:>9.3f} / {h.median:<8.3f} {o.best:>8.3f} / {o.median:<7.3f} "
                      f"{h.median / o.median:>10.1f}x", flush=True)


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
    parser.add_argument("--layout", action="store_true", help="also time NCHW against transposed NHWC convolution")
    parser.add_argument("--no-models", action="store_true", help="skip the model comparison")
    args = parser.parse_args(argv)
    print(load_header(), f"; {args.threads} thread(s) each")
    if args.layout:
        bench_layout(args.repeats)
    if not args.no_models:
        bench_models(args.models.split(","), [int(b) for b in args.batches.split(",")], args.threads, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
