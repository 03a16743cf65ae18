"""hubkit against onnxruntime on the same models, same weights, same thread count, in one process.

Usage: ``python scripts/bench_vs_ort.py [--threads 1,2] [--workloads mlp,image] [--batches 1,64,4096] [--quick]
[--pause SECONDS]``

For each thread count the measurements run in a fresh child process whose environment sets
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` before NumPy is imported,
and onnxruntime gets the same number of intra-op threads, with its default thread spinning (as
users run it). Contenders take turns (interleaved rounds) and sleep ``--pause`` seconds before each
sample, so no engine's spinning threads (onnxruntime's, and OpenBLAS's after hubkit's threaded GEMMs)
overlap the next contender's timing: by default 0.05 s with one thread and ``_timing.SPIN_PAUSE``
(0.3 s) with more, longer than OpenBLAS's spin (a 0.05 s pause let it slow onnxruntime's two-thread
image CNN from 27 to 49 ms). After the pause each contender makes a few untimed calls, so its own
threads are awake when its sample starts.

Workloads:

- ``mlp``: an MLP 784-512-512-10 (ReLU, float32) at batch 1, 64 and 4096: hubkit's eager module
  call ``m(x)`` and ``Session.run``, onnxruntime (``Gemm``/``Relu`` built with ``onnx.helper``), and
  the limit: the same three GEMMs alone, ``np.matmul(..., out=)`` into preallocated arrays (no bias,
  no activation, no allocation). At batch 1 (up to 8 rows) also ``m(x)`` with the small-batch
  kernel off (``hubkit/ops/_small_linear.py``; NumPy's GEMV, the code before it).
- ``image``: the CNN of ``scripts/export_image_features.py`` (four 3x3 conv blocks) at batch 32 on
  96x96x3 images, hubkit's module call against onnxruntime on the same weights (the ONNX graph of
  ``scripts/bench_image.py``).

``--clock cpu`` times CPU seconds of the process instead of wall seconds: steadier on a loaded
machine, and comparable only with one thread (with more, every thread's CPU time adds up, spinning
included), so it is refused with ``--threads`` above 1.

Every row prints min (median) per call and the ratios hubkit / onnxruntime and hubkit / limit
(below 1: hubkit is faster). Outputs are checked against each other before timing. The first lines
say which OpenBLAS kernels run (``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` change them when set
before Python starts: unset them for the machine's own choice, e.g.
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench_vs_ort.py``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SCRIPTS = str(Path(__file__).resolve().parent)

MLP_SIZES = (784, 512, 512, 10)
MLP_BATCHES = ((1, 40, 200), (64, 30, 40), (4096, 12, 2))  # (batch, rounds, calls per sample)


def _blas_info() -> str:
    """``OpenBLAS <version>, <kernel> kernels, N thread(s)`` of the BLAS NumPy loaded."""
    import ctypes
    import glob

    import numpy as np

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*.so*")):
        lib = ctypes.CDLL(path)
        parts = []
        for prefix in ("scipy_openblas_", "openblas_"):
            for tail in ("64_", ""):
                core = getattr(lib, f"{prefix}get_corename{tail}", None)
                threads = getattr(lib, f"{prefix}get_num_threads{tail}", None)
                if core is not None and threads is not None:
                    core.restype = ctypes.c_char_p
                    parts = [f"OpenBLAS, {core().decode()} kernels, {threads()} thread(s)"]
                    break
            if parts:
                break
        if parts:
            return parts[0]
    return "BLAS not identified"


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e6:8.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:8.2f} ms"


def _report(title: str, res: dict, ours: tuple[str, ...], ort: str | None, limit: str | None) -> None:
    print(title)
    for name, t in res.items():
        line = f"  {name:<22} {_fmt(t.best)} ({_fmt(t.median).strip()})"
        if name in ours:
            if ort is not None:
                line += f"  hubkit/ort {t.best / res[ort].best:5.2f}x ({t.median / res[ort].median:.2f}x median)"
            if limit is not None:
                line += f"  hubkit/limit {t.best / res[limit].best:5.2f}x"
        print(line)


def _unoptimised(make_module, example):
    """A module from ``make_module()`` whose plan is compiled (by calling it on ``example``) without the optimiser."""
    from hubkit.runtime.optimize import set_optimize_enabled

    set_optimize_enabled(False)
    try:
        module = make_module()
        module(example)
    finally:
        set_optimize_enabled(None)
    return module


# -- the MLP ---------------------------------------------------------------------------------------------
def _mlp_weights():
    import numpy as np

    rng = np.random.default_rng(0)
    out = []
    for n_in, n_out in itertools.pairwise(MLP_SIZES):
        out.append((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32))
        out.append((rng.standard_normal(n_out) * 0.1).astype(np.float32))
    return out


def _mlp_module(weights):
    import hubkit as hk

    def module_fn() -> None:
        x = hk.placeholder(hk.float32, [None, MLP_SIZES[0]], name="x")
        h = x
        for i in range(3):
            w = hk.Variable(weights[2 * i], name=f"dense{i}/kernel")
            b = hk.Variable(weights[2 * i + 1], name=f"dense{i}/bias")
            h = hk.nn.bias_add(hk.matmul(h, w), b)
            if i < 2:
                h = hk.nn.relu(h)
        hk.add_signature(inputs=x, outputs=h)

    return hk.Module(hk.create_module_spec(module_fn))


def _mlp_onnx(weights, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    names = ["W1", "b1", "W2", "b2", "W3", "b3"]
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["h1"]),
        helper.make_node("Gemm", ["h1", "W2", "b2"], ["z2"]),
        helper.make_node("Relu", ["z2"], ["h2"]),
        helper.make_node("Gemm", ["h2", "W3", "b3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", MLP_SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", MLP_SIZES[-1]])],
        [numpy_helper.from_array(a, n) for a, n in zip(weights, names)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _small_kernel_off(fn):
    """``fn`` run with the small-batch kernel off (``hubkit/ops/_small_linear.py``): NumPy's GEMV, as before it."""
    from hubkit.ops import _small_linear

    def run():
        _small_linear.MAX_ROWS = 0
        try:
            return fn()
        finally:
            _small_linear.MAX_ROWS = 8

    return run


def bench_mlp(threads: int, scale: float, pause: float, clock, batches: tuple[int, ...] | None = None) -> None:
    import numpy as np
    from _timing import interleaved

    import hubkit as hk
    from hubkit.ops import _small_linear

    weights = _mlp_weights()
    module = _mlp_module(weights)
    unoptimised = _unoptimised(lambda: _mlp_module(weights), np.zeros((1, MLP_SIZES[0]), np.float32))
    sess = hk.Session(module._graph)
    sig = module._variant.signature(None)
    x_t = module._eager_tensors[sig.inputs["default"].name]
    y_t = module._eager_tensors[sig.outputs["default"].name]
    ort_sess = _mlp_onnx(weights, threads)
    w1, w2, w3 = weights[0], weights[2], weights[4]
    rng = np.random.default_rng(1)
    for batch, rounds, inner in MLP_BATCHES:
        if batches is not None and batch not in batches:
            continue
        x = rng.standard_normal((batch, MLP_SIZES[0])).astype(np.float32)
        o1, o2, o3 = (np.empty((batch, n), np.float32) for n in MLP_SIZES[1:])

        def gemms(x=x, o1=o1, o2=o2, o3=o3):
            np.matmul(x, w1, out=o1)
            np.matmul(o1, w2, out=o2)
            return np.matmul(o2, w3, out=o3)

        ref = ort_sess.run(None, {"x": x})[0]
        for got in (module(x), sess.run(y_t, {x_t: x}), unoptimised(x)):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        fns = {
            "hubkit m(x)": lambda x=x: module(x),
            "hubkit Session.run": lambda x=x: sess.run(y_t, {x_t: x}),
            "hubkit, no optimiser": lambda x=x: unoptimised(x),
            "onnxruntime": lambda x=x: ort_sess.run(None, {"x": x}),
            "limit: GEMMs alone": gemms,
        }
        if batch <= _small_linear.MAX_ROWS:  # the same call with NumPy's GEMV (the code before the kernel)
            fns["hubkit m(x), BLAS GEMV"] = _small_kernel_off(lambda x=x: module(x))
        ours = ("hubkit m(x)", "hubkit Session.run", "hubkit, no optimiser", "hubkit m(x), BLAS GEMV")
        res = interleaved(fns, max(3, int(rounds * scale)), inner, warmup=max(2, inner // 4), pause=pause, clock=clock,
                          rewarm=max(1, inner // 4) if pause else 0)
        _report(f"MLP {'-'.join(map(str, MLP_SIZES))}, batch {batch}, {threads} thread(s): min (median) per call",
                res, ours, "onnxruntime", "limit: GEMMs alone")
        if "hubkit m(x), BLAS GEMV" in res:
            a, b = res["hubkit m(x)"], res["hubkit m(x), BLAS GEMV"]
            print(f"  hubkit m(x) / BLAS GEMV: {a.best / b.best:.2f}x ({a.median / b.median:.2f}x median)")


# -- the image feature extractor -------------------------------------------------------------------------
def bench_image(threads: int, scale: float, pause: float, clock, batch: int = 32, image_size: int = 96) -> None:
    import numpy as np
    from _timing import interleaved
    from bench_image import onnx_session
    from export_image_features import export, init_weights

    import hubkit as hk

    images = np.random.default_rng(1).random((batch, image_size, image_size, 3), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "image_features")
        export(path, image_size, seed=0)
        module = hk.Module(path)
        unoptimised = _unoptimised(lambda: hk.Module(path), images[:1])
        ort_sess = onnx_session(init_weights(0), image_size, threads, spinning=True)
        ref = ort_sess.run(["features"], {"images": images})[0]
        np.testing.assert_allclose(module(images), ref, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(unoptimised(images), ref, rtol=1e-3, atol=1e-4)
        fns = {
            "hubkit m(x)": lambda: module(images),
            "hubkit, no optimiser": lambda: unoptimised(images),
            "onnxruntime": lambda: ort_sess.run(["features"], {"images": images}),
        }
        res = interleaved(fns, max(3, int(15 * scale)), 1, warmup=2, pause=pause, clock=clock, rewarm=1 if pause else 0)
    _report(f"image features (4 conv blocks), batch {batch}, {image_size}x{image_size}x3, {threads} thread(s): "
            "min (median) per call", res, ("hubkit m(x)", "hubkit, no optimiser"), "onnxruntime", None)


def child(args: argparse.Namespace) -> int:
    sys.path.insert(0, _SCRIPTS)
    from _timing import load_header

    import hubkit as hk

    threads = args.threads[0]
    print(f"== {threads} thread(s): {load_header()}")
    import numpy as np
    import onnxruntime

    coretype = {k: os.environ.get(k, "(unset)") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"   {_blas_info()} {coretype}; numpy {np.__version__}, onnxruntime {onnxruntime.__version__} "
          f"({threads} intra-op thread(s), default spinning), hubkit {hk.__version__}, "
          f"Numba kernels {'on' if hk.ops._numba.numba_enabled() else 'off'}")
    scale = 0.3 if args.quick else 1.0
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"   clock: {'CPU time of the process' if args.clock == 'cpu' else 'wall time'}")
    for workload in args.workloads:
        if workload == "mlp":
            bench_mlp(threads, scale, args.pause, clock, args.batches)
        else:
            bench_image(threads, scale, args.pause, clock)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--workloads", default="mlp,image", help="comma-separated: mlp, image (default both)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, noisier)")
    parser.add_argument("--pause", type=float, default=None,
                        help="seconds of sleep before each sample (default 0.05 with one thread, 0.3 with more)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="what a sample measures (default wall)")
    parser.add_argument("--batches", default=None,
                        help="comma-separated MLP batch sizes to run, among 1, 64, 4096 (default all)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if any(t < 1 for t in args.threads):
        parser.error("--threads must be at least 1")
    if args.clock == "cpu" and any(t > 1 for t in args.threads):
        parser.error("--clock cpu measures single-threaded work only; use --threads 1")
    if args.batches is not None:
        try:
            args.batches = tuple(int(b) for b in args.batches.split(","))
        except ValueError:
            parser.error(f"--batches must be comma-separated integers, got {args.batches!r}")
        known = {b for b, _, _ in MLP_BATCHES}
        if not set(args.batches) <= known:
            parser.error(f"unknown --batches {sorted(set(args.batches) - known)}; expected some of {sorted(known)}")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.workloads) - {"mlp", "image"})
    if unknown:
        parser.error(f"unknown workloads {unknown}; expected ['image', 'mlp']")
    if args.child:
        return child(args)
    sys.path.insert(0, _SCRIPTS)
    from _timing import pause_for

    status = 0
    for threads in args.threads:
        pause = pause_for(threads, args.pause)
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
        cmd = [sys.executable, __file__, "--child", "--threads", str(threads), "--workloads", ",".join(args.workloads),
               "--pause", str(pause), "--clock", args.clock] + (["--quick"] if args.quick else [])
        if args.batches is not None:
            cmd += ["--batches", ",".join(map(str, args.batches))]
        sys.stdout.flush()
        status |= subprocess.run(cmd, env=env, check=False).returncode
        time.sleep(pause)
    return status


if __name__ == "__main__":
    sys.exit(main())
