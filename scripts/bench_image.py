"""Image feature extractor at batch 32: hubkit (NumPy and Numba kernels) vs onnxruntime, same weights.

Usage: ``python scripts/bench_image.py [--image-size 96] [--batch 32] [--seconds 10] [--threads 1]``
``[--per-layer | --blas | --thresholds | --bias-relu | --rgb-layer]``

Exports the CNN of scripts/export_image_features.py, loads it, and builds the same network as an
ONNX graph with ``onnx.helper`` (NHWC input transposed to NCHW, Conv/Relu/MaxPool, global average).
Checks both give the same features, then prints images/second and the ratio. Skips the onnxruntime
half when onnx or onnxruntime is not installed. The NumPy kernels also run with Winograd off
(every conv through the blocked im2col), so the Winograd gain is measured in the same run.

Like is compared with like: ``--threads N`` gives onnxruntime N intra-op threads and NumPy's
OpenBLAS N threads (set at run time through the library's own ``*_set_num_threads``), and the
output states both, plus the OpenBLAS kernel family in use (``OPENBLAS_CORETYPE`` overrides it).

The other modes time one piece each, its contenders interleaved in this process (best of the rounds):

- ``--per-layer``: each conv layer of the network at ``--batch``, im2col vs Winograd (forced on
  even where the default keeps im2col), in ms, with the ratio and the variant the default picks;
- ``--blas``: a 2048^3 float32 matmul, GFLOP/s of the BLAS as loaded (``OPENBLAS_CORETYPE`` must
  be set before Python starts to change the kernels);
- ``--thresholds``: Winograd vs im2col speed (im2col time / Winograd time) over input channel
  counts at 48x48 (batch 32) and over tile counts, the figures behind ``_WINOGRAD_MIN_CHANNELS``
  and ``_WINOGRAD_MIN_TILES`` in ``hubkit/ops/_conv_numpy.py``;
- ``--bias-relu``: ``relu(bias_add(x, b))`` on the block-1 activations (batch x 96 x 96 x 32):
  the plan unfused vs fused (Numba) vs NumPy writing the ReLU in place into the bias-add result.
- ``--rgb-layer``: the first block (3x3 conv on the RGB images + bias + ReLU + 2x2 max pool) as the
  fused step runs it: the direct Numba kernel (``hubkit/ops/_conv_small.py``) vs the blocked im2col
  GEMM, and onnxruntime running the same block (transposes to and from NCHW included), CPU time.
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

from _timing import interleaved, load_header
from export_image_features import BLOCKS, export, init_weights

import hubkit as hk
from hubkit.ops import _conv_numpy as conv_numpy
from hubkit.ops import _numba, _winograd43, conv_fused
from hubkit.ops import conv as conv_ops
from hubkit.runtime.executor import compile_plan

_WINOGRAD_MIN_CHANNELS = conv_numpy._WINOGRAD_MIN_CHANNELS
_WINOGRAD_MIN_TILES = conv_numpy._WINOGRAD_MIN_TILES


def configure(name: str) -> None:
    """Sets the kernels contender ``name`` runs with: Numba on or off, Winograd on or off."""
    _numba.set_numba_enabled(name == "numba")
    conv_numpy._WINOGRAD_MIN_CHANNELS = 1 << 30 if name == "numpy, no Winograd" else _WINOGRAD_MIN_CHANNELS


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


def onnx_session(weights: list[tuple[np.ndarray, np.ndarray]], image_size: int, threads: int = 0, spinning: bool = False):
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
    if not spinning:  # idle workers would steal the cores from the contender run next (no pauses here)
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


# -- single-piece modes --------------------------------------------------------------------------------
def _conv_fn(x: np.ndarray, w: np.ndarray, mode: str):
    """A call of the forward conv kernel (3x3 SAME, stride 1) with Winograd forced ``mode`` ("im2col"/"winograd")."""
    _, pads = conv_ops._runtime_geometry(x.shape[1:3], w.shape[:2], (1, 1), (1, 1), "SAME")
    conv = conv_numpy.kernels["conv2d"]

    def run() -> np.ndarray:
        force = mode == "winograd"
        conv_numpy._WINOGRAD_MIN_CHANNELS = 1 if force else 1 << 30
        conv_numpy._WINOGRAD_MIN_TILES = 0 if force else _WINOGRAD_MIN_TILES
        try:
            return conv(x, w, (1, 1), (1, 1), pads)
        finally:
            conv_numpy._WINOGRAD_MIN_CHANNELS, conv_numpy._WINOGRAD_MIN_TILES = _WINOGRAD_MIN_CHANNELS, _WINOGRAD_MIN_TILES

    return run


def _f43_fn(x: np.ndarray, w: np.ndarray):
    """A call of Winograd F(4x4, 3x3) with compiled transforms (3x3 SAME, stride 1), or None without Numba."""
    if not _winograd43.available():
        return None
    out = np.empty((*x.shape[:3], w.shape[3]), np.float32)

    def run() -> np.ndarray:
        u = _winograd43.filter_transform(w, out.dtype)
        _winograd43.conv3x3_bias_act(x, u, None, 0, ((1, 1), (1, 1)), out)
        return out

    return run


def _im2col_vs_winograd(n: int, hw: int, c: int, k: int, rounds: int) -> tuple[float, float, float, str]:
    """(im2col s, F(2x2) s, F(4x4) s or nan, what the fused default picks) of one 3x3 SAME conv, interleaved."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, hw, hw, c), dtype=np.float32)
    w = (rng.standard_normal((3, 3, c, k)) / np.sqrt(9 * c)).astype(np.float32)
    fns = {"im2col": _conv_fn(x, w, "im2col"), "winograd": _conv_fn(x, w, "winograd")}
    f43 = _f43_fn(x, w)
    if f43 is not None:
        fns["f43"] = f43
    ref = fns["im2col"]()
    for name in fns:
        np.testing.assert_allclose(fns[name](), ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))
    t = interleaved(fns, rounds, 1, warmup=1)
    picked = "winograd" if conv_numpy._use_winograd(x, (3, 3), (1, 1), (1, 1), (hw, hw)) else "im2col"
    if conv_fused._use_f43(x, (3, 3), (1, 1), (1, 1), (hw, hw), x.dtype):
        picked = "F(4x4)"
    return t["im2col"].best, t["winograd"].best, t["f43"].best if "f43" in t else float("nan"), picked


def bench_per_layer(batch: int, image_size: int, rounds: int) -> None:
    peak = _blas_gflops()
    print(f"per conv layer, batch {batch}, best of {rounds} interleaved calls (ms): im2col vs Winograd F(2x2, 3x3) "
          f"vs F(4x4, 3x3) with Numba transforms; GFLOP/s count a direct convolution's 2*N*OH*OW*K*9*C FLOPs, "
          f"against the BLAS's {peak:.0f} GFLOP/s (2048^3 matmul, this run)")
    hw, c = image_size, 3
    for k, pool in BLOCKS:
        t_im, t_wino, t_43, picked = _im2col_vs_winograd(batch, hw, c, k, rounds)
        gflop = 2 * batch * hw * hw * k * 9 * c / 1e9
        best = min(t for t in (t_im, t_wino, t_43) if t == t)
        print(f"  {hw}x{hw} {c:>3}->{k:<3}  im2col {t_im * 1e3:6.1f}  F(2x2) {t_wino * 1e3:6.1f}  F(4x4) {t_43 * 1e3:6.1f}  "
              f"im2col/F(2x2) {t_im / t_wino:4.2f}x  F(2x2)/F(4x4) {t_wino / t_43:4.2f}x  (fused default: {picked}); "
              f"best {gflop / best:5.0f} GFLOP/s = {gflop / best / peak:4.0%} of the BLAS peak")
        c = k
        hw = hw // 2 if pool else hw


def bench_thresholds(rounds: int) -> None:
    print("Winograd vs im2col speed (im2col time / Winograd time; above 1: Winograd wins), best of "
          f"{rounds} interleaved calls; defaults: >= {_WINOGRAD_MIN_CHANNELS} input channels, >= {_WINOGRAD_MIN_TILES} tiles")
    _numba.set_numba_enabled(True)  # F(4x4, 3x3) needs Numba
    cases = [(32, 48, c, 32) for c in (3, 8, 16, 24, 32)]
    cases += [(1, 4, 256, 256), (1, 7, 128, 128), (4, 7, 128, 128), (16, 7, 128, 128)]
    for n, hw, c, k in cases:
        tiles = n * (-(-hw // 2)) ** 2
        t_im, t_wino, t_43, picked = _im2col_vs_winograd(n, hw, c, k, rounds)
        print(f"  batch {n:>2} {hw:>2}x{hw:<2} {c:>3}->{k:<3} ({tiles:>5} tiles): im2col {t_im * 1e3:7.2f} ms, "
              f"F(2x2) {t_wino * 1e3:7.2f} ms -> {t_im / t_wino:4.2f}x; F(4x4) {t_43 * 1e3:7.2f} ms -> "
              f"{t_im / t_43:4.2f}x  (fused default: {picked})")


def _blas_gflops() -> float:
    """GFLOP/s of a 2048^3 float32 matmul with the BLAS as loaded (best of 5)."""
    n = 2048
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    t = interleaved({"matmul": lambda: np.matmul(a, b, out=out)}, 5, 1, warmup=1)["matmul"]
    return 2 * n**3 / t.best / 1e9


def bench_blas() -> None:
    n = 2048
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    t = interleaved({"matmul": lambda: np.matmul(a, b, out=out)}, 5, 1, warmup=1)["matmul"]
    flops = 2 * n**3
    print(f"{n}^3 float32 matmul: best {flops / t.best / 1e9:.0f} GFLOP/s, median {flops / t.median / 1e9:.0f} GFLOP/s "
          f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')})")


def bench_bias_relu(batch: int, image_size: int, rounds: int) -> None:
    channels = BLOCKS[0][0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, image_size, image_size, channels), dtype=np.float32)
    b = rng.standard_normal(channels, dtype=np.float32)
    g = hk.Graph()
    with g.as_default():
        xt = hk.placeholder(hk.float32, [None, image_size, image_size, channels])
        bt = hk.placeholder(hk.float32, [channels])
        y = hk.nn.relu(hk.nn.bias_add(xt, bt))
    if not _numba.set_numba_enabled(True):
        print("numba is not available: no fused plan to time")
    plan = compile_plan(g, [y], [xt, bt])
    _numba.set_numba_enabled(None)
    unfused = plan.unfused or plan

    def in_place() -> np.ndarray:
        out = np.add(x, b)
        return np.maximum(out, 0, out=out)

    fns = {"unfused plan": lambda: unfused.run([x, b]), "fused plan": lambda: plan.run([x, b]), "NumPy in place": in_place}
    ref = in_place()
    for name in ("unfused plan", "fused plan"):
        np.testing.assert_array_equal(fns[name]()[0], ref)
    t = interleaved(fns, rounds, 1, warmup=1)
    print(f"relu(bias_add(x, b)) on {batch}x{image_size}x{image_size}x{channels} float32 ({x.nbytes / 1e6:.0f} MB), "
          f"min of {rounds} interleaved calls{'' if plan.unfused else ' (not fused: the two plans are the same)'}:")
    for name, timing in t.items():
        print(f"  {name:>14}: {timing.best * 1e3:6.2f} ms  ({t['unfused plan'].best / timing.best:4.2f}x the unfused plan's speed)")



def _rgb_layer_onnx(w: np.ndarray, b: np.ndarray, image_size: int, threads: int):
    """onnxruntime running the first block alone (NHWC in and out), or None without onnx/onnxruntime."""
    try:
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w", "b"], ["c"], kernel_shape=[3, 3], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p"], ["y"], perm=[0, 2, 3, 1]),
    ]
    inits = [numpy_helper.from_array(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), "w"), numpy_helper.from_array(b, "b")]
    graph = helper.make_graph(
        nodes, "rgb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, image_size, image_size, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def bench_rgb_layer(batch: int, image_size: int, threads: int, rounds: int) -> None:
    w, _ = init_weights(0)[0]
    b = np.random.default_rng(2).standard_normal(w.shape[3]).astype(np.float32)
    x = np.random.default_rng(1).random((batch, image_size, image_size, 3), dtype=np.float32)
    small = conv_fused.SMALL_MAX_CHANNELS
    _numba.set_numba_enabled(True)

    def fused(direct: bool):
        def run() -> np.ndarray:
            conv_fused.SMALL_MAX_CHANNELS = small if direct else 0
            try:
                return conv_fused.conv2d_bias_act_max_pool(x, w, b, 1, (1, 1), (1, 1), "SAME", (2, 2), (2, 2), "VALID")
            finally:
                conv_fused.SMALL_MAX_CHANNELS = small

        return run

    fns = {"direct (Numba)": fused(True), "blocked im2col": fused(False)}
    session = _rgb_layer_onnx(w, b, image_size, threads)
    if session is not None:
        fns["onnxruntime"] = lambda: session.run(["y"], {"x": x})[0]
    ref = fns["blocked im2col"]()
    for fn in fns.values():
        np.testing.assert_allclose(fn(), ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    t = interleaved(fns, rounds, 1, warmup=1, pause=0.05, clock=time.process_time)
    flops = 2 * batch * image_size * image_size * w.size
    print(f"first block (3x3 conv {w.shape[2]} -> {w.shape[3]} + bias + ReLU + 2x2 max pool), batch {batch}, "
          f"{image_size}x{image_size}, CPU time, min (median) of {rounds} interleaved calls:")
    for name, timing in t.items():
        print(f"  {name:>15}: {timing.best * 1e3:6.2f} ms ({timing.median * 1e3:6.2f} ms), "
              f"{flops / timing.best / 1e9:5.1f} GFLOP/s, {timing.best / t['blocked im2col'].best:4.2f}x the im2col's time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="total measuring time (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both onnxruntime and OpenBLAS (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the single-piece modes (default 7)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--per-layer", action="store_true", help="time each conv layer: im2col vs Winograd")
    mode.add_argument("--blas", action="store_true", help="GFLOP/s of a 2048^3 float32 matmul with the loaded BLAS")
    mode.add_argument("--thresholds", action="store_true", help="Winograd vs im2col over channel and tile counts")
    mode.add_argument("--bias-relu", action="store_true", help="relu(bias_add) unfused vs fused vs NumPy in place")
    mode.add_argument("--rgb-layer", action="store_true", help="the first block: direct kernel vs im2col vs onnxruntime")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    blas = set_blas_threads(args.threads)
    print(f"{load_header()}; hubkit: {blas}")
    if args.per_layer:
        _numba.set_numba_enabled(True)  # F(4x4, 3x3) needs Numba
        bench_per_layer(args.batch, args.image_size, args.rounds)
        return 0
    if args.blas:
        bench_blas()
        return 0
    if args.thresholds:
        bench_thresholds(args.rounds)
        return 0
    if args.bias_relu:
        bench_bias_relu(args.batch, args.image_size, args.rounds)
        return 0
    if args.rgb_layer:
        bench_rgb_layer(args.batch, args.image_size, args.threads, args.rounds)
        return 0
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
