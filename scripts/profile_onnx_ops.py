"""Per-op-type time split of hubkit's optimised plans for the ONNX CNNs of ``bench_onnx.py``.

Runs each model's optimised plan step by step (``bench_onnx.plan_layers``: fastest of ``--repeats``
per step, process CPU time), sums the step times by op type (the fused chain's label, its first
member for convolutions) and prints them with the executor's own per-call overhead: one whole
``module(...)`` call minus the sum of its steps. ``--compare`` also runs the plan with the pooling /
head rewrites of ``hubkit/runtime/optimize_pool.py`` turned off (``HUBKIT_OPTIMIZE_POOL=0``) and
prints both, interleaved in one process. ``--ort`` compares layer by layer with onnxruntime's own
per-node profile (``SessionOptions.enable_profiling``, one intra-op thread): every convolution call of
hubkit's plan (also those inside a fused ``Concat``) and every pool is timed and keyed by kernel, stride,
output channels (rounded up to 16, as onnxruntime's NCHWc blocks pad them) and output size, as is each
onnxruntime node; the table gives both sums per key, the difference and the ratio, largest loss first.

Usage: ``.venv/bin/python scripts/profile_onnx_ops.py [--models squeezenet,...] [--batches 1,16] [--repeats 3]
[--ort]``
"""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _timing import load_header  # noqa: E402

import hubkit as hk  # noqa: E402

MODELS = ["squeezenet", "resnet50", "densenet121", "inception_v1"]


def _op_type(label: str) -> str:
    if label.startswith("OnnxConv"):
        return "OnnxConv(+fused)"
    if label.startswith("Fold("):
        return "Fold (constants)"
    return label.split(" ")[0]


def step_times(module, feed: dict, repeats: int, clock=time.process_time) -> list[tuple[float, str]]:
    """(fastest CPU seconds, label) of each step of the module's optimised default plan."""
    from bench_onnx import timed_steps

    from hubkit.runtime.optimize import _step_label

    return timed_steps(module, feed, repeats, clock, lambda fn, node, args, res: _step_label(fn, node))


def whole_call(module, key, x, repeats: int, clock=time.process_time) -> float:
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = clock()
        module({key: x}, as_dict=True)
        best = min(best, clock() - t0)
    return best


def load(name: str, batch: int, tmp: str):
    import onnx
    from onnx import numpy_helper

    from tests.importers.onnx.onnx_helpers import light_model

    model = light_model(name)
    del model.graph.value_info[:]
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
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
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path, save_as_external_data=True, location="weights.bin")
    return path


def report(name: str, batch: int, rows: list[tuple[float, str]], call: float, tag: str = "") -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for t, label in rows:
        by.setdefault(_op_type(label), []).append(t)
    total = sum(t for t, _ in rows)
    print(f"{name} batch {batch}{tag}: {len(rows)} steps, sum of steps {total * 1e3:.2f} ms, whole call "
          f"{call * 1e3:.2f} ms (executor overhead {(call - total) * 1e3:+.2f} ms)")
    for op, ts in sorted(by.items(), key=lambda kv: -sum(kv[1])):
        s = sum(ts)
        print(f"    {op:<34} {len(ts):>4} steps {s * 1e3:9.2f} ms {s / total:5.1%}")
    return {op: sum(ts) for op, ts in by.items()}


def _conv_key(kernel, stride: int, m: int, out_hw) -> str:
    return f"conv k{kernel[0]}x{kernel[1]} s{stride} -> {-(-m // 16) * 16} @{out_hw[0]}x{out_hw[1]}"


def hubkit_layers(module, key, x, repeats: int) -> tuple[dict[str, list[float]], float]:
    """Fastest CPU seconds of each convolution and pool call of one ``module`` call, keyed as onnxruntime's
    nodes are (:func:`_conv_key`), and the fastest whole call."""
    from hubkit.runtime import optimize_conv, optimize_layout, optimize_pool

    calls: list[tuple[str, float]] = []
    # (class, channels-last) of the kernels timed: the NCHW steps and their NHWC forms (runtime/optimize_layout.py)
    convs = [(optimize_conv.FusedOnnxConv, False), (optimize_layout.NhwcConv, True)]
    pools = [(optimize_pool.PoolStep, False), (optimize_layout.NhwcPool, True)]
    saved = [(cls, cls.__call__) for cls, _ in convs + pools]

    def timed_conv(call, nhwc):
        def run(self, x, prep, res=None, out=None):
            t0 = time.process_time()
            y = call(self, x, prep, res, out)
            dt = time.process_time() - t0
            m, hw = (y.shape[3], y.shape[1:3]) if nhwc else (y.shape[1], y.shape[2:])
            calls.append((_conv_key(prep.kernel, int(self.attrs["strides"][0]), m, hw), dt))
            return y
        return run

    def timed_pool(call, nhwc):
        def run(self, x):
            t0 = time.process_time()
            y = call(self, x)
            dt = time.process_time() - t0
            m, hw = (y.shape[3], y.shape[1:3]) if nhwc else (y.shape[1], y.shape[2:])
            kind = self.label.split(" ")[0]
            calls.append((f"{kind.removeprefix('Onnx')} {-(-m // 16) * 16} @{hw[0]}x{hw[1]}", dt))
            return y
        return run

    best: list[tuple[str, float]] = []
    try:
        for cls, nhwc in convs:
            cls.__call__ = timed_conv(cls.__call__, nhwc)  # type: ignore[method-assign]
        for cls, nhwc in pools:
            cls.__call__ = timed_pool(cls.__call__, nhwc)  # type: ignore[method-assign]
        for rep in range(max(1, repeats)):
            calls.clear()
            module({key: x}, as_dict=True)
            best = list(calls) if rep == 0 else [(k, min(t, calls[i][1])) for i, (k, t) in enumerate(best)]
    finally:
        for cls, call in saved:
            cls.__call__ = call  # type: ignore[method-assign]
    by: dict[str, list[float]] = {}
    for k, t in best:
        by.setdefault(k, []).append(t)
    return by, whole_call(module, key, x, repeats)


def ort_layers(path: str, x: np.ndarray, repeats: int, tmp: str) -> tuple[dict[str, list[float]], float]:
    """Fastest seconds of each onnxruntime node (its own profile, one thread), keyed as :func:`hubkit_layers`,
    and its fastest whole call (CPU time)."""
    import json

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tmp, "ort_profile")
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    best_call = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.process_time()
        session.run(None, feed)
        best_call = min(best_call, time.process_time() - t0)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    best: dict[str, tuple[float, str]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        a = e["args"]
        op = a.get("op_name", "?")
        shapes = [next(iter(d.values())) for d in a.get("input_type_shape", [])]
        out = [next(iter(d.values())) for d in a.get("output_type_shape", [])]
        if op in ("Conv", "FusedConv") and len(shapes) >= 2 and out and len(out[0]) == 4:
            w = shapes[1]
            stride = max(1, round(shapes[0][2] / out[0][2])) if w[2] > 1 or shapes[0][2] != out[0][2] else 1
            k = _conv_key(w[2:4], stride, out[0][1], out[0][2:4])
        elif op in ("MaxPool", "AveragePool") and out and len(out[0]) == 4:
            k = f"{op} {-(-out[0][1] // 16) * 16} @{out[0][2]}x{out[0][3]}"
        else:
            k = f"{op} (other)"
        dur = e["dur"] * 1e-6
        if node not in best or dur < best[node][0]:
            best[node] = (dur, k)
    by: dict[str, list[float]] = {}
    for dur, k in best.values():
        by.setdefault(k, []).append(dur)
    return by, best_call


def compare_with_ort(name: str, batch: int, path: str, x: np.ndarray, repeats: int, tmp: str) -> None:
    module = hk.Module(path)
    (key,) = module.get_input_info_dict()
    module({key: x}, as_dict=True)  # compile and warm up
    ours, our_call = hubkit_layers(module, key, x, repeats)
    theirs, their_call = ort_layers(path, x, repeats, tmp)
    print(f"{name} batch {batch}: whole call hubkit {our_call * 1e3:.2f} ms, onnxruntime {their_call * 1e3:.2f} ms "
          f"({our_call / their_call:.2f}x); per layer (fastest of {repeats}, ms; onnxruntime's profile):")
    print(f"    {'layer':<34} {'n':>3} {'hubkit':>9} {'ORT':>9} {'diff':>8} {'ratio':>6}")
    rows = []
    for k in set(ours) | set(theirs):
        a, b = sum(ours.get(k, [])), sum(theirs.get(k, []))
        rows.append((a - b, k, len(ours.get(k, theirs.get(k, []))), a, b))
    for diff, k, count, a, b in sorted(rows, reverse=True):
        ratio = f"{a / b:5.2f}x" if a and b else ""
        print(f"    {k:<34} {count:>3} {a * 1e3:9.2f} {b * 1e3:9.2f} {diff * 1e3:+8.2f} {ratio:>6}")
    rest = our_call - sum(sum(v) for v in ours.values())
    print(f"    hubkit's other steps and call overhead: {rest * 1e3:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run with HUBKIT_OPTIMIZE_POOL=0")
    parser.add_argument("--ort", action="store_true", help="layer by layer against onnxruntime's node profile")
    args = parser.parse_args(argv)
    print(load_header(), "; 1 thread, process CPU time")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                path = load(name, batch, tmp)
                x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
                if args.ort:
                    compare_with_ort(name, batch, path, x, args.repeats, tmp)
                    continue
                variants = [("", "1")] + ([(" (optimize_pool off)", "0")] if args.compare else [])
                modules = []
                for tag, flag in variants:
                    os.environ["HUBKIT_OPTIMIZE_POOL"] = flag
                    m = hk.Module(path)
                    (key,) = m.get_input_info_dict()
                    m({key: x}, as_dict=True)  # compile and warm up
                    modules.append((tag, m, key))
                os.environ.pop("HUBKIT_OPTIMIZE_POOL", None)
                for tag, m, key in modules:
                    rows = step_times(m, {key: x}, args.repeats)
                    report(name, batch, rows, whole_call(m, key, x, args.repeats), tag)
                if len(modules) == 2:
                    a = modules[0][1]({modules[0][2]: x}, as_dict=True)
                    b = modules[1][1]({modules[1][2]: x}, as_dict=True)
                    for k in a:
                        err = float(np.max(np.abs(a[k] - b[k])))
                        print(f"    max |difference| of {k}: {err:.3g} (scale {float(np.max(np.abs(b[k]))):.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
