"""Review 4, class 3: a few bytes of a module file never make a call allocate more than the documented limit.

The ONNX import bound on static output sizes was skipped whenever a dimension was unknown (a Resize by 16384 on
``[N, 1, 8, 8]`` imported and asked for 64 GiB per image); it now counts unknown dimensions as 1, and the ops
that multiply sizes (Resize, Tile, Expand, Pad, Fill/ConstantOfShape, TF Tile/Fill/Pad) refuse at run time an
output over ``MAX_OUTPUT_ELEMENTS`` (2**31) before allocating it. The calls run in a child process whose address
space is limited to 4 GiB, so a regression fails as a MemoryError (not the limit's message), never by swapping.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops._helpers import MAX_OUTPUT_ELEMENTS, check_output_size, tiled_shape
from tests.security.hostile import run_in_child

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

_LIMITED = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
'''


def _save(path, nodes, inputs, inits=()):
    rank = len(inputs[0].type.tensor_type.shape.dim)  # y has the rank of x in every model here
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * rank)
    graph = helper.make_graph(nodes, "g", inputs, [y], initializer=list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def _x(shape):
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)


def _resize(path, x_shape, scale):
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, scale])
    return _save(path, [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")], [_x(x_shape)],
                 [scales])


def _tile(path, x_shape, reps):
    r = helper.make_tensor("reps", TensorProto.INT64, [len(reps)], reps)
    return _save(path, [helper.make_node("Tile", ["x", "reps"], ["y"])], [_x(x_shape)], [r])


def _pad(path, x_shape, pads):
    p = helper.make_tensor("pads", TensorProto.INT64, [len(pads)], pads)
    return _save(path, [helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant")], [_x(x_shape)], [p])


def test_static_sizes_are_bounded_per_item_when_a_dimension_is_unknown(tmp_path):
    cases = {
        "resize-dynamic-batch": _resize(str(tmp_path / "r.onnx"), [None, 1, 8, 8], 16384),
        "resize-named-batch": _resize(str(tmp_path / "rn.onnx"), ["batch", 1, 8, 8], 16384),
        "tile-dynamic-batch": _tile(str(tmp_path / "t.onnx"), [None, 1, 1], [1, 2**20, 2**20]),
        "pad-dynamic-batch": _pad(str(tmp_path / "p.onnx"), [None, 1, 1], [0, 0, 0, 0, 2**20, 2**20]),
    }
    records = run_in_child(_LIMITED + r'''
for path in sys.argv[1:]:
    attempt(path, lambda path=path: hk.Module(path))
''', *cases.values())
    for name, path in cases.items():
        record = records[path]
        assert record["outcome"] == "hubkit", (name, record)
        assert f"the limit is {MAX_OUTPUT_ELEMENTS}" in record["error"] and "counted as 1" in record["error"], record


def test_size_multiplying_ops_refuse_huge_outputs_at_run_time(tmp_path):
    i64 = TensorProto.INT64
    shape_in = helper.make_tensor_value_info("shape", i64, [None])
    cases = {
        # shapes unknown at import: only the run-time check sees the size
        "resize": (_resize(str(tmp_path / "r.onnx"), [1, 1, None, None], 16384), "Resize"),
        "tile": (_tile(str(tmp_path / "t.onnx"), [None, None], [2**16, 2**16]), "Tile"),
        "pad": (_pad(str(tmp_path / "p.onnx"), [None, None], [0, 0, 2**20, 2**20]), "Pad"),
        "expand": (_save(str(tmp_path / "e.onnx"), [helper.make_node("Expand", ["x", "shape"], ["y"])],
                         [_x([None, None]), shape_in]), "Expand"),
        "constant-of-shape": (_save(str(tmp_path / "c.onnx"), [
            helper.make_node("ConstantOfShape", ["shape"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
            [_x([None, None]), shape_in]), "Fill"),
    }
    records = run_in_child(_LIMITED + r'''
big = np.array([2**17, 2**17], np.int64)
for path in sys.argv[1:]:
    def call(path=path):
        m = hk.Module(path)
        names = list(m.get_input_info_dict())
        feeds = {"x": np.ones((1, 1) if "shape" in names else ((1, 1, 8, 8) if path.endswith("r.onnx") else (8, 8)),
                              np.float32)}
        if "shape" in names:
            feeds["shape"] = big
        m(feeds, as_dict=True)
    attempt(path, call)
''', *(path for path, _ in cases.values()))
    for name, (path, what) in cases.items():
        record = records[path]
        assert record["outcome"] == "hubkit", (name, record)
        assert f"{what}: an output of shape" in record["error"], (name, record)
        assert f"the limit is {MAX_OUTPUT_ELEMENTS}" in record["error"], (name, record)


def test_tf_size_multiplying_ops_refuse_huge_outputs_at_run_time():
    records = run_in_child(_LIMITED + r'''
from hubkit.ops.registry import apply
x = hk.constant(np.ones((4, 4), np.float32))
big = hk.placeholder(hk.int64, [2])
pads = hk.placeholder(hk.int64, [2, 2])
cases = {
    "TfTile": (apply("TfTile", x, big), {big: [2**17, 2**17]}),
    "TfFill": (apply("TfFill", big, hk.constant(np.float32(1))), {big: [2**17, 2**17]}),
    "TfPad": (apply("TfPad", x, pads), {pads: [[0, 2**20], [0, 2**20]]}),
    "Fill": (hk.fill(big, 1.0), {big: [2**17, 2**17]}),
}
for name, (t, feeds) in cases.items():
    def run(t=t, feeds=feeds):
        hk.Session().run(t, feeds)
    attempt(name, run)
''')
    assert set(records) == {"TfTile", "TfFill", "TfPad", "Fill"}
    for name, record in records.items():
        assert record["outcome"] == "hubkit" and f"the limit is {MAX_OUTPUT_ELEMENTS}" in record["error"], (name, record)


def test_the_limit_itself():
    check_output_size([2**16, 2**15], "Tile")  # exactly the limit
    with pytest.raises(Exception, match="the limit is"):
        check_output_size([2**16, 2**15 + 1], "Tile")
    with pytest.raises(Exception, match="the limit is"):
        check_output_size([2**40, 2**40, 0 + 1], "Fill")  # Python integers: no wrap-around
    check_output_size([2**62, 0], "Fill")  # empty
    assert tiled_shape((2, 3), [4]) == [2, 12]
    assert tiled_shape((3,), [2, 5]) == [2, 15]
    assert list(np.tile(np.ones((2, 3)), [4]).shape) == tiled_shape((2, 3), [4])
    assert list(np.tile(np.ones(3), [2, 5]).shape) == tiled_shape((3,), [2, 5])
