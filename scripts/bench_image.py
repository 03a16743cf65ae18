"""Image feature extractor at batch 32: hubkit (NumPy and Numba kernels) vs onnxruntime, same weights.

Usage: ``python scripts/bench_image.py [--image-size 96] [--batch 32] [--seconds 10] [--threads 1]``

Exports the CNN of scripts/export_image_features.py, loads it, and builds the same network as an
ONNX graph with ``onnx.helper`` (NHWC input transposed to NCHW, Conv/Relu/MaxPool, global average).
Checks both give the same features, then prints images/second and the ratio. Skips the onnxruntime
half when onnx or onnxruntime is not installed. The NumPy kernels also run with Winograd off
(every conv through the blocked im2col), so the Winograd gain is measured in the same run.

Like is compared with like: ``--threads N`` gives onnxruntime N intra-op threads and NumPy's
OpenBLAS N threads (set at run time through the library's own ``*_set_num_threads``), and the
output states both, plus the OpenBLAS kernel family in use (``OPENBLAS_CORETYPE`` overrides it).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from export_image_features import BLOCKS, export, init_weights

import hubkit as hk
from hubkit.ops import _numba
from hubkit.ops import conv as conv_ops

_WINOGRAD_MIN_CHANNELS = conv_ops._WINOGRAD_MIN_CHANNELS


def configure(name: str) -> None:
    """Sets the kernels contender ``name`` runs with: Numba on or off, Winograd on or off."""
    _numba.set_numba_enabled(name == "numba")
    conv_ops._WINOGRAD_MIN_CHANNELS = 1 << 30 if name == "numpy, no Winograd" else _WINOGRAD_MIN_CHANNELS


def _openblas() -> ctypes.CDLL | None:
    """NumPy's bundled OpenBLAS (already loaded, so this is the same library instance), or None."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*.so*")):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _blas_symbol(lib: ctypes.CDLL | None, suffix: str):
    for prefix in ("scipy_openblas_", "openblas_"):
        for tail in ("64_", "_64_", ""):
            fn = getattr(lib, f"{prefix}{suffix}{tail}", None) if lib is not None else None
            if fn is not None:
                return fn
    return None


def set_blas_threads(threads: int) -> str:
    """Sets OpenBLAS's thread count; returns a description of the BLAS for the report."""
    lib = _openblas()
    setter, corename = _blas_symbol(lib, "set_num_threads"), _blas_symbol(lib, "get_corename")
    if setter is None:
        return "BLAS threads not controlled (set OPENBLAS_NUM_THREADS)"
    setter(ctypes.c_int(threads))  # the 64-bit-int build still takes a C int here
    core = ""
    if corename is not None:
        corename.restype = ctypes.c_char_p
        core = f", {corename().decode()} kernels"
    return f"OpenBLAS {threads} thread(s){core}"


def onnx_session(weights: list[tuple[np.ndarray, np.ndarray]], image_size: int, threads: int = 0):
    """An onnxruntime session computing the same features, or None when onnx/onnxruntime are missing."""
    try:
        import onnx
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    nodes = [helper.make_node("Transpose", ["images"], ["x0"], perm=[0, 3, 1, 2])]
    inits = []
    x = "x0"
    for i, ((w, b), (_, pool)) in enumerate(zip(weights, BLOCKS)):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), f"w{i}"))  # HWIO -> OIHW
        inits.append(numpy_helper.from_array(b, f"b{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
        if pool:
            nodes.append(helper.make_node("MaxPool", [x], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["g"]))
    nodes.append(helper.make_node("Flatten", ["g"], ["features"], axis=1))
    graph = helper.make_graph(
        nodes, "features",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, image_size, image_size, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, BLOCKS[-1][0]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)  # onnx may be newer than what onnxruntime reads
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per physical core)
    options.inter_op_num_threads = 1
    # Idle workers must not spin: they would steal the cores from the contender run next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def images_per_second(fns: dict[str, object], batch: np.ndarray, seconds: float) -> dict[str, float]:
    """Images per second of each ``fn`` from its fastest call, the contenders interleaved call by call.

    The machine is shared, so the fastest of many calls (the one least disturbed by other work)
    is the figure compared, and every contender gets the same chances at a quiet moment.
    """
    best = dict.fromkeys(fns, float("inf"))
    for name, fn in fns.items():  # warm-up: compile, allocate, fill caches
        configure(name)
        fn(batch)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for name, fn in fns.items():
            configure(name)
            t0 = time.perf_counter()
            fn(batch)
            best[name] = min(best[name], time.perf_counter() - t0)
    configure("numpy")
    _numba.set_numba_enabled(None)
    return {name: batch.shape[0] / t for name, t in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="total measuring time (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both onnxruntime and OpenBLAS (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    blas = set_blas_threads(args.threads)
    images = np.random.default_rng(1).random((args.batch, args.image_size, args.image_size, 3), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "image_features")
        export(path, args.image_size, seed=0)
        module = hk.Module(path)
        session = onnx_session(init_weights(0), args.image_size, args.threads)
        contenders = {"numpy": module, "numpy, no Winograd": module}
        if _numba.set_numba_enabled(True):
            contenders["numba"] = module
        _numba.set_numba_enabled(None)
        if session is not None:
            ref = session.run(["features"], {"images": images})[0]
            np.testing.assert_allclose(module(images), ref, rtol=1e-3, atol=1e-4)
            contenders["onnxruntime"] = lambda x: session.run(["features"], {"images": x})
        else:
            print("onnxruntime: not installed (pip install onnx onnxruntime), skipped")
        rates = images_per_second(contenders, images, args.seconds)
        for name, rate in rates.items():
            ratio = ""
            if name != "onnxruntime" and "onnxruntime" in rates:
                ratio = f"  onnxruntime is {rates['onnxruntime'] / rate:.2f}x faster (target <= 3x)"
            print(f"{name:>18}: {rate:8.1f} images/s{ratio}")
    ort = f"onnxruntime {args.threads} intra-op thread(s)" if session is not None else "no onnxruntime"
    print(f"batch {args.batch}, {args.image_size}x{args.image_size}x3 images, conv blocks {[c for c, _ in BLOCKS]}")
    print(f"threads: {ort}; hubkit: {blas}; Numba kernels single-threaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
