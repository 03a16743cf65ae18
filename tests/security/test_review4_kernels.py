"""Review 4, class 2: shapes and indices taken from tensor values never reach a Numba kernel unchecked.

``TfSparseFillEmptyRows`` read ``values[m]`` for every index row: 4,000,000 index rows (a ``Fill`` of a few bytes
in graph.pb) with a one-element ``values`` constant read 32 MB past it (SIGSEGV). Every hostile module runs in a
child process, with the Numba kernels and with the NumPy ones, so a regression fails the test instead of killing
pytest.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import GraphError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.ops import _numba
from hubkit.ops.registry import apply
from hubkit.ops.tf_array import TfRuntimeError
from hubkit.ops.tf_sparse import TfSparseFillEmptyRows
from tests.security.hostile import add_tf_const, run_in_child

TF1_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tf1")

_CALL = r'''
for path in sys.argv[1:]:
    def call(path=path):
        m = hk.Module(path)
        y = m(np.ones((2, 3) if path.endswith("-tf1") else 3, np.float32))
        np.asarray(y).sum()
    attempt(path, call)
'''


def _i64(*v):
    return np.array(v, np.int64)


def _fill_module(path: str, indices, values, dense_shape, default) -> str:
    """A module whose output depends on ``SparseFillEmptyRows`` of the given constants (a shape for ``indices``:
    a zero-filled int64 ``Fill`` of that shape, a few bytes in graph.pb)."""

    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        if isinstance(indices, tuple):
            idx = hk.zeros(hk.constant(np.array(indices[1], np.int32)), dtype=hk.int64)
        else:
            idx = hk.constant(indices)
        out = apply("TfSparseFillEmptyRows", idx, hk.constant(values), hk.constant(dense_shape), hk.constant(default))
        hk.add_signature(inputs=x, outputs=x + hk.cast(hk.reduce_sum(out[1]), hk.float32)
                         + hk.cast(hk.reduce_sum(out[0]), hk.float32) + hk.cast(hk.reduce_sum(out[3]), hk.float32))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


_BAD = {
    "values-shorter-4M-rows": (("fill", [4_000_000, 2]), np.ones(1, np.float64), _i64(3, 3), np.float64(0)),
    "values-shorter-by-one": (_i64([0, 0], [1, 0], [2, 0]), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
    "values-longer": (_i64([0, 0]), np.ones(5, np.float32), _i64(3, 3), np.float32(0)),
    "values-empty": (("fill", [1000, 2]), np.ones(0, np.float32), _i64(3, 3), np.float32(0)),
    "indices-no-columns": (("fill", [100_000, 0]), np.ones(100_000, np.float32), _i64(3, 3), np.float32(0)),
    "indices-float": (np.zeros((2, 2), np.float32), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
    "dense-shape-empty": (_i64([0, 0]), np.ones(1, np.float32), np.zeros(0, np.int64), np.float32(0)),
    "dense-rows-negative": (_i64([0, 0]), np.ones(1, np.float32), _i64(-5, 3), np.float32(0)),
    "row-negative": (_i64([-1, 0], [1, 0]), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
    "row-past-the-end": (_i64([0, 0], [3, 0]), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
    "row-huge": (_i64([0, 0], [2**62, 0]), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
}


_BAD_RANKS = {
    "values-matrix": (_i64([0, 0], [1, 0]), np.ones((2, 1), np.float32), _i64(3, 3), np.float32(0)),
    "indices-vector": (_i64(0, 1), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
    "indices-rank-3": (np.zeros((2, 1, 2), np.int64), np.ones(2, np.float32), _i64(3, 3), np.float32(0)),
    "dense-shape-scalar": (_i64([0, 0]), np.ones(1, np.float32), np.int64(3), np.float32(0)),
    "default-empty": (_i64([0, 0]), np.ones(1, np.float32), _i64(3, 3), np.zeros(0, np.float32)),
    "default-two-values": (_i64([0, 0]), np.ones(1, np.float32), _i64(3, 3), np.zeros(2, np.float32)),
}


def test_fill_empty_rows_of_the_wrong_ranks_is_refused_when_built():
    for inputs in _BAD_RANKS.values():
        with pytest.raises(GraphError, match=r"must (have rank|be a scalar)"):
            apply("TfSparseFillEmptyRows", *(hk.constant(v) for v in inputs))
        with pytest.raises(TfRuntimeError):  # the run-time check, for ranks unknown when the graph was built
            TfSparseFillEmptyRows.forward(*(np.asarray(v) for v in inputs))


def _run_both_ways(paths: list[str]) -> None:
    for numba in ("1", "0"):
        records = run_in_child(_CALL, *paths, env=dict(os.environ, HUBKIT_NUMBA=numba))
        for path in paths:
            assert records[path]["outcome"] == "hubkit", (numba, records[path])
            assert "TfRuntimeError" in records[path]["error"], (numba, records[path])


def test_fill_empty_rows_with_mismatched_inputs_is_refused(tmp_path):
    paths = [_fill_module(str(tmp_path / name), *inputs) for name, inputs in _BAD.items()]
    _run_both_ways(paths)


def test_fill_empty_rows_still_fills(tmp_path):
    indices = _i64([0, 1], [0, 3], [2, 0], [4, 2])
    values = np.array([1, 2, 3, 4], np.float32)
    for numba in (True, False):
        _numba.set_numba_enabled(numba)
        try:
            out = hk.Session().run(apply("TfSparseFillEmptyRows", hk.constant(indices), hk.constant(values),
                                         hk.constant(_i64(6, 5)), hk.constant(np.float32(-1))))
        finally:
            _numba.set_numba_enabled(None)
        np.testing.assert_array_equal(out[0], [[0, 1], [0, 3], [1, 0], [2, 0], [3, 0], [4, 2], [5, 0]])
        np.testing.assert_array_equal(out[1], [1, 2, -1, 3, -1, 4, -1])
        np.testing.assert_array_equal(out[2], [False, True, False, True, False, True])
        np.testing.assert_array_equal(out[3], [0, 1, 3, 5])


def _tf1_fill_module(path: str, idx_dims: list[int], values: np.ndarray) -> str:
    """The ``two_signatures`` TF1 module whose ``default`` output is a SparseFillEmptyRows of a ``Fill`` of
    ``idx_dims`` zeros and ``values``."""
    shutil.copytree(os.path.join(TF1_DATA, "two_signatures"), path)
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    gd = sm.meta_graphs[0].graph_def

    add_tf_const(gd, "fz/dims", np.array(idx_dims, np.int32))
    add_tf_const(gd, "fz/zero", np.array(0, np.int64))
    add_tf_const(gd, "fz/vals", values)
    add_tf_const(gd, "fz/dense", _i64(3, 3))
    add_tf_const(gd, "fz/default", np.array(0, np.float32))
    fill = gd.node.add(name="fz/idx", op="Fill", input=["fz/dims", "fz/zero"])
    fill.attr["T"].type = 9
    fill.attr["index_type"].type = 3
    node = gd.node.add(name="fz/fill", op="SparseFillEmptyRows", input=["fz/idx", "fz/vals", "fz/dense", "fz/default"])
    node.attr["T"].type = 1
    out = sm.meta_graphs[0].signature_def["default"].outputs["default"]
    out.name = "fz/fill:1"
    out.tensor_shape.ClearField("dim")
    out.tensor_shape.dim.add(size=-1)
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(sm.SerializeToString())
    return path


def test_fill_empty_rows_in_a_tf1_module_is_refused(tmp_path):
    paths = [
        _tf1_fill_module(str(tmp_path / "short-tf1"), [4_000_000, 2], np.ones(1, np.float32)),
        _tf1_fill_module(str(tmp_path / "no-columns-tf1"), [100_000, 0], np.ones(100_000, np.float32)),
        _tf1_fill_module(str(tmp_path / "longer-tf1"), [2, 2], np.ones(3, np.float32)),
    ]
    _run_both_ways(paths)


# -- the audit of every Numba call site: a convolution's bias length came from the module, unchecked -----------
def _conv_module(path: str, bias_len: int, channels: int = 4096) -> str:
    """A module whose OnnxConv has ``channels`` filters and a bias constant patched in graph.pb to ``bias_len``
    values: the fused epilogue kernels read ``bias[k]`` for every channel (1 value for 4096 gave NaNs read past it)."""

    def module_fn():
        x = hk.placeholder(hk.float32, [1, 2, 8, 8], name="x")
        w = hk.constant(np.ones((channels, 2, 3, 3), np.float32))
        b = hk.constant(np.ones(channels, np.float32), name="the_bias")
        hk.add_signature(inputs=x, outputs=apply("OnnxConv", x, w, b, strides=[1, 1], dilations=[1, 1],
                                                  pads=[1, 1, 1, 1]))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    with open(os.path.join(path, "graph.pb"), "rb") as f:
        g = pb.ModuleGraph.FromString(f.read())
    (node,) = [n for n in g.variants[0].nodes if n.name == "the_bias"]
    (entry,) = [e for e in node.attrs.entries if e.key == "value"]
    del entry.value.tensor.shape.dims[:]
    entry.value.tensor.shape.dims.append(bias_len)
    entry.value.tensor.content = np.ones(bias_len, np.float32).tobytes()
    with open(os.path.join(path, "graph.pb"), "wb") as f:
        f.write(g.SerializeToString())
    return path


_CONV_CALL = r'''
for path in sys.argv[1:]:
    def call(path=path):
        m = hk.Module(path)
        y = m(np.ones((1, 2, 8, 8), np.float32), as_dict=True) if path.endswith(".onnx") else m(np.ones((1, 2, 8, 8), np.float32))
        y = np.asarray(y["y"] if isinstance(y, dict) else y)
        if not np.isfinite(y).all():
            raise RuntimeError("values read past the bias")
    attempt(path, call)
'''


def _onnx_conv(path: str, bias_len: int, channels: int = 4096) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((channels, 2, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.ones(bias_len, np.float32), "b")
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [x], [y], initializer=[w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_a_convolution_bias_of_the_wrong_length_never_reaches_the_epilogue_kernels(tmp_path):
    pytest.importorskip("onnx")
    paths = [_conv_module(str(tmp_path / f"bias-{n}"), n) for n in (1, 0, 3, 4095, 4097)]
    paths += [_onnx_conv(str(tmp_path / f"bias-{n}.onnx"), n) for n in (1, 0, 4095)]
    records = run_in_child(_CONV_CALL, *paths)
    for path in paths:
        assert records[path]["outcome"] == "hubkit", records[path]
        assert "one value per output channel" in records[path]["error"], records[path]


def test_prepared_convolutions_check_their_bias():
    from hubkit.errors import OpError
    from hubkit.ops.conv_nchw import PreparedConv

    w = np.ones((8, 2, 3, 3), np.float32)
    assert PreparedConv(w, np.ones(8, np.float32)).bias.shape == (8,)
    for bias in (np.ones(1, np.float32), np.ones(0, np.float32), np.ones((8, 1), np.float32)):
        with pytest.raises(OpError, match="bias"):
            PreparedConv(w, bias)
