"""Review 5: Range and OneHot count their outputs before building them (``MAX_OUTPUT_ELEMENTS``, review 4's bound).

TF ``Range``'s shape inference built ``np.arange`` of its constant inputs just to take its length: a TF1
SavedModel with ``Range(0, 3e8, 1)`` took 2.4 GB to *load*, and ``Range(0, 1e10, 1)`` made ``hk.Module`` raise a
bare ``MemoryError``. ONNX and TF ``Range`` with limits from tensors, and TF ``OneHot`` with a depth from a
tensor, built outputs of any size on the first call. Every case runs in a child process whose address space is
limited (a regression fails with a MemoryError instead of swapping).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from tests.security.hostile import add_tf_const, run_in_child

TF1_DATA = os.path.join(os.path.dirname(__file__), "..", "data", "tf1", "two_signatures")

_LOAD = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
for path in sys.argv[1:]:
    def load(path=path):
        m = hk.Module(path)
        if "call" in path:
            np.asarray(m(np.zeros((2, 3), np.float32)) if "tf1" in path else m(np.float32(1e10), as_dict=True)["y"])
    attempt(path, load)
'''


def _tf1(path: str, op: str, values: dict[str, np.ndarray]) -> str:
    """The ``two_signatures`` TF1 module whose ``default`` output is ``op`` of constants (``Range``: start, limit,
    delta; ``OneHot``: indices, depth, on, off). A name ending in ``-call`` makes the limit or depth depend on the
    input (``Size(x) * value``), so only the call knows it."""
    shutil.copytree(TF1_DATA, path)
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    gd = sm.meta_graphs[0].graph_def
    x = next(n.name for n in gd.node if n.op == "Placeholder")

    names = [add_tf_const(gd, f"h/{k}", v) for k, v in values.items()]
    if path.endswith("-call"):  # the limit (Range) or depth (OneHot) times the input's size / 6
        size = gd.node.add(name="h/size", op="Size", input=[x])
        size.attr["T"].type = 1
        size.attr["out_type"].type = 3
        dtype = 1 if op == "Range" else 3
        cast = gd.node.add(name="h/cast", op="Cast", input=["h/size"])
        cast.attr["SrcT"].type = 3
        cast.attr["DstT"].type = dtype
        mul = gd.node.add(name="h/scaled", op="Mul", input=["h/cast", names[1]])
        mul.attr["T"].type = dtype
        names[1] = "h/scaled"
    node = gd.node.add(name="h/out", op=op, input=names)
    if op == "Range":
        node.attr["Tidx"].type = 1
    else:
        node.attr["T"].type = 1
        node.attr["TI"].type = 3
        node.attr["axis"].i = -1
    out = sm.meta_graphs[0].signature_def["default"].outputs["default"]
    out.name = "h/out:0"
    out.dtype = 1
    out.tensor_shape.ClearField("dim")
    out.tensor_shape.unknown_rank = True
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(sm.SerializeToString())
    return path


def _f(v):
    return np.array(v, np.float32)


def _i(v):
    return np.array(v, np.int32)


def test_tf1_range_is_counted_not_built_at_load(tmp_path):
    ok = _tf1(str(tmp_path / "tf1-range-3e8"), "Range", {"s": _f(0), "l": _f(3e8), "d": _f(1)})
    refused = {
        "1e10": _tf1(str(tmp_path / "tf1-range-1e10"), "Range", {"s": _f(0), "l": _f(1e10), "d": _f(1)}),
        "negative": _tf1(str(tmp_path / "tf1-range-down"), "Range", {"s": _f(0), "l": _f(-1e12), "d": _f(-0.5)}),
        "tiny-step": _tf1(str(tmp_path / "tf1-range-tiny"), "Range", {"s": _f(0), "l": _f(1), "d": _f(1e-30)}),
        "call": _tf1(str(tmp_path / "tf1-range-call"), "Range", {"s": _f(0), "l": _f(1e9), "d": _f(1)}),
    }
    records = run_in_child(_LOAD, ok, *refused.values(), env={**os.environ, "HUBKIT_CACHE_DIR": str(tmp_path / "c")})
    assert records[ok]["outcome"] == "ok", records[ok]  # 3e8 float64 values were built to count them: 2.4 GB
    for label, path in refused.items():
        assert records[path]["outcome"] == "hubkit", (label, records[path])
        assert "the limit is 2147483648" in records[path]["error"], (label, records[path])


def test_tf1_range_still_counts_like_numpy(tmp_path):
    import hubkit as hk

    for i, (s, lim, d) in enumerate([(0, 10, 3), (5, 0, -2), (0, 1, 0.1), (3, 3, 1), (0, -5, 1), (0.5, 7.25, 0.75)]):
        path = _tf1(str(tmp_path / f"ok-{i}"), "Range", {"s": _f(s), "l": _f(lim), "d": _f(d)})
        y = np.asarray(hk.Module(path)(np.zeros((2, 3), np.float32)))
        np.testing.assert_array_equal(y, np.arange(np.float32(s), np.float32(lim), np.float32(d), dtype=np.float32))
    with pytest.raises(Exception, match="non-zero delta"):
        hk.Module(_tf1(str(tmp_path / "zero"), "Range", {"s": _f(0), "l": _f(1), "d": _f(0)}))


def test_one_hot_depth_from_a_tensor_is_bounded(tmp_path):
    paths = [
        _tf1(str(tmp_path / "tf1-onehot-call"), "OneHot", {"i": _i([0, 1]), "depth": _i(300_000_000),
                                                            "on": _f(1), "off": _f(0)}),
    ]
    records = run_in_child(_LOAD, *paths, env={**os.environ, "HUBKIT_CACHE_DIR": str(tmp_path / "c")})
    for path in paths:
        assert records[path]["outcome"] == "hubkit", records[path]
        assert "the limit is 2147483648" in records[path]["error"], records[path]


def test_onnx_range_with_a_limit_from_an_input_is_bounded(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    limit = helper.make_tensor_value_info("limit", TensorProto.FLOAT, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    start = helper.make_tensor("start", TensorProto.FLOAT, [], [0.0])
    delta = helper.make_tensor("delta", TensorProto.FLOAT, [], [1.0])
    graph = helper.make_graph([helper.make_node("Range", ["start", "limit", "delta"], ["y"])], "g", [limit], [y],
                              initializer=[start, delta])
    path = str(tmp_path / "range-call.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    records = run_in_child(_LOAD, path)
    assert records[path]["outcome"] == "hubkit", records[path]
    assert "the limit is 2147483648" in records[path]["error"], records[path]


_SEGMENTS = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from hubkit.ops.tf_sparse import TfSparseSegmentReduce
for path in sys.argv[1:]:
    attempt(path, lambda path=path: np.asarray(hk.Module(path)(np.ones((1, 4), np.float32))).sum())
for reduction in ("sum", "mean", "sqrtn"):
    for ids, n in (([0], 2**31), ([2**30], None), ([0], 2**40)):
        data = np.ones((1, 4), np.float32)
        extra = () if n is None else (np.int64(n),)
        attempt(f"tf-{reduction}-{ids[0]}-{n}", lambda: TfSparseSegmentReduce.forward(
            data, np.array([0]), np.array(ids), *extra, reduction=reduction))
'''


def _segment_module(path: str, ids: list[int], num_segments: int | None) -> str:
    import hubkit as hk

    def module_fn():
        x = hk.placeholder(hk.float32, [1, 4], name="x")
        ids_t = hk.constant(np.array(ids, np.int64))
        y = hk.unsorted_segment_sum(x, ids_t, hk.constant(np.int64(num_segments))) if num_segments is not None \
            else hk.segment_sum(x, ids_t)
        hk.add_signature(inputs=x, outputs=y)

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


def test_segment_counts_from_tensors_are_bounded(tmp_path):
    """A segment count (or a largest id) of 2**30 and more from a one-value constant asked for 16 GiB and more."""
    paths = [
        _segment_module(str(tmp_path / "num-segments"), [0], 2**31),
        _segment_module(str(tmp_path / "num-segments-huge"), [0], 2**40),
        _segment_module(str(tmp_path / "largest-id"), [2**30], None),
    ]
    records = run_in_child(_SEGMENTS, *paths)
    assert len(records) == 3 + 9, records
    for label, record in records.items():
        assert record["outcome"] == "hubkit", (label, record)
        assert "the limit is 2147483648" in record["error"], (label, record)


_SPARSE = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from hubkit.ops import sparse
from hubkit.ops.sparse_tensor import SparseFillEmptyRows, SparseToDense
from hubkit.ops.tf_sparse import TfSparseFillEmptyRows
i64 = lambda *v: np.array(v, np.int64)
one = (np.zeros((1, 2), np.int64), np.ones(1, np.float32))
for shape in [(2**20, 2**20), (2**31 + 1,), (2**16, 2**16, 2)]:
    attempt(f"to-dense-{shape}", lambda: SparseToDense.forward(np.zeros((1, len(shape)), np.int64), one[1],
                                                               i64(*shape), np.float32(0)))
for rows in (2**31, 2**40):
    attempt(f"fill-{rows}", lambda: SparseFillEmptyRows.forward(*one, i64(rows, 3), np.float32(0)))
    attempt(f"tf-fill-{rows}", lambda: TfSparseFillEmptyRows.forward(*one, i64(rows, 3), np.float32(0)))
for rows in (2**30, 2**26):
    for fn in (sparse.combine, sparse.combine_numpy):
        attempt(f"combine-{fn.__name__}-{rows}", lambda: fn(np.ones((10, 64), np.float32), i64(1), i64(0), rows, None, 0))
'''


def test_dense_shapes_and_row_counts_of_sparse_values_are_bounded():
    """A SparseTensor's ``dense_shape`` (a fed or constant tensor) sized SparseToDense, the filled rows and the rows of
    ``embedding_lookup_sparse`` with no bound: [2**20, 2**20] asked for 4 TiB, 2**30 rows of 64 for 256 GiB."""
    records = run_in_child(_SPARSE)
    assert len(records) == 3 + 4 + 4, records
    for label, record in records.items():
        assert record["outcome"] == "hubkit", (label, record)
        assert "the limit is 2147483648" in record["error"], (label, record)


_STITCH = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from hubkit.ops.tf_sparse import TfDynamicStitch
for index, width in ((2**30, 64), (2**33, 1), (2**62, 1)):
    attempt(f"stitch-{index}", lambda: TfDynamicStitch.forward(np.array([index], np.int32 if index < 2**31 else np.int64),
                                                                np.ones((1, width), np.float32)))
'''


def test_dynamic_stitch_rows_from_an_index_are_bounded():
    """DynamicStitch's output has as many rows as its largest index + 1: one index of 2**30 asked for 256 GiB."""
    records = run_in_child(_STITCH)
    assert len(records) == 3, records
    for label, record in records.items():
        assert record["outcome"] == "hubkit", (label, record)
        assert "the limit is 2147483648" in record["error"], (label, record)
