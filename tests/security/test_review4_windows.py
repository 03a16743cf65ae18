"""Review 4, class 1: window geometry from a module file must never reach a kernel that cannot run it in bounds.

A pool ``kernel_shape`` of 0 or less made the output larger than the input (8 columns gave 1,000,001), and the
Numba pool kernels, which check no index, then read gigabytes past a buffer (SIGSEGV) or wrote 4 MB past one.
Every hostile module is loaded and called in a child process, so a regression fails the test instead of
killing pytest.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import GraphError, OpError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.ops.registry import apply
from tests.security.hostile import run_in_child

_CALL = r'''
for path in sys.argv[1:]:
    def call(path=path):
        m = hk.Module(path)
        x = np.ones((1, 1, 8, 8) if "nchw" in path or path.endswith(".onnx") else (1, 8, 8, 1), np.float32)
        y = m(x, as_dict=True) if path.endswith(".onnx") else m(x)
        np.asarray(y["y"] if isinstance(y, dict) else y).sum()
    attempt(path, call)
'''


def _module(path: str, build, patches: dict[str, list[int]], op: str) -> str:
    """A hubkit module built by ``build(x)`` whose ``op`` nodes get the list attributes ``patches`` in graph.pb."""
    nchw = "nchw" in os.path.basename(path)

    def module_fn():
        x = hk.placeholder(hk.float32, [1, 1, 8, 8] if nchw else [1, 8, 8, 1], name="x")
        hk.add_signature(inputs=x, outputs=build(x))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    with open(os.path.join(path, "graph.pb"), "rb") as f:
        g = pb.ModuleGraph.FromString(f.read())
    hit = 0
    for node in g.variants[0].nodes:
        if node.op != op:
            continue
        for entry in node.attrs.entries:
            if entry.key in patches:
                del entry.value.list.items[:]
                for v in patches[entry.key]:
                    entry.value.list.items.add().i = v
                hit += 1
    assert hit == len(patches), (op, patches)
    with open(os.path.join(path, "graph.pb"), "wb") as f:
        f.write(g.SerializeToString())
    return path


def _onnx_pool(kind, kernel, strides):
    def build(x):
        extra = {"dilations": [1, 1]} if kind == "OnnxMaxPool" else {}
        return apply(kind, x, kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 0, 0], **extra)
    return build, {"kernel_shape": kernel, "strides": strides}


# (name, op, builder, patched attributes)
_ONNX_POOLS = [
    (f"{kind}-{label}", kind, *_onnx_pool(kind, kernel, strides))
    for kind in ("OnnxMaxPool", "OnnxAveragePool")
    for label, kernel, strides in [
        ("zero", [0, 0], [1, 1]),
        ("negative", [-3, -3], [1, 1]),
        ("huge-negative-read", [1, -10**9], [1, 1000]),  # max_pool2d_kernel read GBs past its row buffer
        ("negative-write", [1, -10**6], [1, 1]),  # the stride-1 kernel wrote 4 MB past its buffer
        ("one-zero", [2, 0], [2, 2]),  # the stride-2 kernels' even/odd split
        ("zero-stride", [2, 2], [0, 1]),
        ("negative-stride", [2, 2], [1, -2]),
    ]
]


def _nhwc_pool(op):
    def build(x):
        fn = hk.nn.max_pool2d if op == "MaxPool" else hk.nn.avg_pool2d
        return fn(x, 2, 1, "VALID")
    return build


def _tf_pool(kind):
    def build(x):
        return apply("TfPool", x, kind=kind, ksize=[1, 2, 2, 1], strides=[1, 1, 1, 1], padding="VALID")
    return build


_NHWC_POOLS = [
    (f"{op}-{label}", op, _nhwc_pool(op), {key: value})
    for op in ("MaxPool", "AvgPool")
    for label, key, value in [("ksize-zero", "ksize", [0, 2]), ("ksize-negative", "ksize", [-5, -5]),
                              ("ksize-huge-negative", "ksize", [1, -10**9]), ("strides-zero", "strides", [0, 1])]
] + [
    (f"TfPool-{kind}-{label}", "TfPool", _tf_pool(kind), {key: value})
    for kind in ("max", "avg")
    for label, key, value in [("ksize-zero", "ksize", [1, 0, 0, 1]), ("ksize-negative", "ksize", [1, -4, 2, 1]),
                              ("ksize-huge-negative", "ksize", [1, 1, -10**9, 1]),
                              ("strides-zero", "strides", [1, 0, 1, 1])]
]


def test_pool_windows_of_zero_or_less_from_graph_pb_are_refused(tmp_path):
    paths = [_module(str(tmp_path / f"nchw-{name}"), build, patches, op) for name, op, build, patches in _ONNX_POOLS]
    paths += [_module(str(tmp_path / f"nhwc-{name}"), build, patches, op) for name, op, build, patches in _NHWC_POOLS]
    records = run_in_child(_CALL, *paths)
    for path in paths:
        assert records[path]["outcome"] == "hubkit", records[path]
    assert "kernel sizes must be >= 1" in records[str(tmp_path / "nchw-OnnxMaxPool-huge-negative-read")]["error"]


def test_conv_windows_of_zero_or_less_from_graph_pb_are_refused(tmp_path):
    w = np.ones((3, 3, 1, 2), np.float32)
    paths = []
    for label, key, value in [("strides-zero", "strides", [0, 1]), ("strides-negative", "strides", [1, -3]),
                              ("dilations-zero", "dilations", [1, 0]), ("dilations-negative", "dilations", [-2, -2])]:
        def build(x):
            return hk.nn.conv2d(x, hk.constant(w), 1, "VALID")
        paths.append(_module(str(tmp_path / f"nhwc-Conv2D-{label}"), build, {key: value}, "Conv2D"))
    records = run_in_child(_CALL, *paths)
    for path in paths:
        assert records[path]["outcome"] == "hubkit", records[path]


def _onnx_model(path: str, op: str, **attrs) -> str:
    """An ONNX model whose pool input's shape onnx cannot infer (so its checker cannot see the kernel)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None, None])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Shape", ["s"], ["ss"]),
        helper.make_node("Slice", ["s", "zero", "ss"], ["s2"]),
        helper.make_node("Reshape", ["x", "s2"], ["xr"]),
        helper.make_node(op, ["xr"], ["y"], **attrs),
    ]
    zero = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[zero])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_onnx_pools_with_kernels_of_zero_or_less_are_refused(tmp_path):
    pytest.importorskip("onnx")
    variants = [("MaxPool", [1, -10**9], [1, 1000]), ("MaxPool", [1, -10**6], [1, 1]), ("MaxPool", [0, 0], [1, 1]),
                ("AveragePool", [1, -10**9], [1, 1000]), ("AveragePool", [-2, 1], [2, 2]),
                ("AveragePool", [0, 3], [1, 1])]
    paths = [_onnx_model(str(tmp_path / f"{i}-{op}.onnx"), op, kernel_shape=k, strides=s)
             for i, (op, k, s) in enumerate(variants)]
    records = run_in_child(_CALL, *paths)
    for path in paths:
        assert records[path]["outcome"] == "hubkit", records[path]
        assert "kernel sizes must be >= 1" in records[path]["error"], records[path]


_DIRECT = r'''
from hubkit.ops import pool_nchw
x = np.ones((1, 2, 8, 8), np.float32)
cases = {
    "kernel-zero": ((0, 0), (1, 1), (1, 1), (0, 0), (9, 9)),
    "kernel-negative": ((1, -10**6), (1, 1), (1, 1), (0, 0), (8, 1000001)),
    "kernel-negative-strided": ((1, -10**9), (1, 1000), (1, 1), (0, 0), (8, 1000001)),
    "stride-zero": ((2, 2), (0, 1), (1, 1), (0, 0), (7, 7)),
    "dilation-zero": ((2, 2), (1, 1), (0, 1), (0, 0), (7, 7)),
    "begin-negative": ((2, 2), (1, 1), (1, 1), (-4, 0), (7, 7)),
    "out-negative": ((2, 2), (1, 1), (1, 1), (0, 0), (-1, 7)),
    "rank-3": ((2, 2), (1, 1), (1, 1), (0, 0), (7, 7)),
    "three-axes": ((2, 2, 2), (1, 1, 1), (1, 1, 1), (0, 0, 0), (7, 7, 7)),
}
for label, (k, s, d, b, o) in cases.items():
    v = x[0] if label == "rank-3" else x
    attempt("max-" + label, lambda v=v, k=k, s=s, d=d, b=b, o=o: pool_nchw.max_pool2d(v, k, s, d, b, o))
    if label != "dilation-zero":  # an average pool has no dilation
        attempt("avg-" + label, lambda v=v, k=k, s=s, b=b, o=o: pool_nchw.avg_pool2d(v, k, s, b, (0,) * len(b), False, o))
attempt("max-valid", lambda: pool_nchw.max_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), (4, 4)))
attempt("avg-valid", lambda: pool_nchw.avg_pool2d(x, (3, 3), (2, 2), (1, 1), (1, 1), True, (4, 4)))
'''


def test_pool_kernels_refuse_geometry_they_cannot_run_in_bounds():
    """Defence in depth: ``pool_nchw`` checks the window itself before any Numba kernel runs."""
    records = run_in_child(_DIRECT)
    assert records.pop("max-valid")["outcome"] == "ok"
    assert records.pop("avg-valid")["outcome"] == "ok"
    assert len(records) == 17
    for label, record in records.items():
        assert record["outcome"] == "hubkit" and record["error"].startswith("OpError"), (label, record)


def test_pool_kernels_still_compute_valid_windows():
    from hubkit.ops import pool_nchw

    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for stride in (1, 2, 3):
        y = apply("OnnxMaxPool", hk.constant(x), kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1])
        ref = hk.Session().run(y)
        out = pool_nchw.max_pool2d(x, (3, 3), (stride, stride), (1, 1), (1, 1), ref.shape[2:])
        if out is not None:
            np.testing.assert_array_equal(out, ref)
    with pytest.raises(OpError):
        pool_nchw.max_pool2d(x, (0, 3), (1, 1), (1, 1), (0, 0), (10, 7))
    with pytest.raises(GraphError, match="kernel sizes must be >= 1"):
        apply("OnnxMaxPool", hk.constant(x), kernel_shape=[3, 0], strides=[1, 1], pads=[0, 0, 0, 0])
    with pytest.raises(GraphError, match="must be >= 1"):
        apply("TfPool", hk.constant(x), kind="max", ksize=[1, 0, 2, 1], strides=[1, 1, 1, 1], padding="VALID")
