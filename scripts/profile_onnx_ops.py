"""Per-op-type time split of hubkit's optimised plans for the ONNX CNNs of ``bench_onnx.py``.

Runs each model's optimised plan step by step (``bench_onnx.plan_layers``: fastest of ``--repeats``
per step, process CPU time), sums the step times by op type (the fused chain's label, its first
member for convolutions) and prints them with the executor's own per-call overhead: one whole
``module(...)`` call minus the sum of its steps. ``--compare`` also runs the plan with the pooling /
head rewrites of ``hubkit/runtime/optimize_pool.py`` turned off (``HUBKIT_OPTIMIZE_POOL=0``) and
prints both, interleaved in one process.

Usage: ``.venv/bin/python scripts/profile_onnx_ops.py [--models squeezenet,...] [--batches 1,16] [--repeats 3]``
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


def main(argv: list[str] | None = None) -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run with HUBKIT_OPTIMIZE_POOL=0")
    args = parser.parse_args(argv)
    print(load_header(), "; 1 thread, process CPU time")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                path = load(name, batch, tmp)
                x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
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
