"""Review 5: ONNX window ops (pools, convolutions, transposed convolutions) from a module file.

- Pads, strides, ``output_padding`` and ``output_shape`` multiply sizes as a ``Pad`` does, but review 4's output bound
  (``MAX_OUTPUT_ELEMENTS``) covered only Resize, Tile, Expand, Pad and Fill: a 120-byte ONNX ``MaxPool``,
  ``AveragePool`` or ``Conv`` with pads of 30,000 (or a ``ConvTranspose`` with strides of 60,000) on an input of
  unknown size asked for 13 GiB on its first call, and smaller values were allocated and touched.
- A ``ConvTranspose`` whose ``output_shape`` exceeds its full output (ONNX Runtime refuses it), or whose SAME
  padding came out negative (strides beyond the window), cropped with a negative slice: a 1x1 result of zeros
  where the graph declared 8x8.

The calls run in a child process whose address space is limited to 4 GiB, so a regression fails with a
MemoryError (not the limit's message) instead of swapping.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.security.hostile import run_in_child

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

_LIMITED_CALL = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
for path in sys.argv[1:]:
    def call(path=path):
        shape = (1, 1 << 16, 1, 1) if "wide" in path else (1, 1, 2, 2)
        y = hk.Module(path)(np.ones(shape, np.float32), as_dict=True)["y"]
        np.asarray(y).sum()
    attempt(path, call)
'''


def _save(path: str, node, inits=(), x_shape=(None, None, None, None)) -> str:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)
    graph = helper.make_graph([node], "g", [x], [y], initializer=list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def _w(shape) -> list:
    return [numpy_helper.from_array(np.ones(shape, np.float32), "w")]


def _cases(d) -> dict[str, str]:
    p = 30000
    return {
        "maxpool-pads": _save(f"{d}/maxpool.onnx", helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1],
                                                                    pads=[p, p, p, p])),
        "maxpool-one-side": _save(f"{d}/maxpool1.onnx", helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1],
                                                                         pads=[0, 0, 2**31, 0])),
        "maxpool-ceil": _save(f"{d}/maxpoolc.onnx", helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1],
                                                                     pads=[50000, 50000, 0, 0], ceil_mode=1)),
        "maxpool-wide": _save(f"{d}/maxpool-wide.onnx", helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[1, 1],
                                                                         pads=[200, 200, 200, 200])),
        "avgpool-pads": _save(f"{d}/avgpool.onnx", helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[1, 1],
                                                                    pads=[p, p, p, p], count_include_pad=1)),
        "avgpool-wide": _save(f"{d}/avgpool-wide.onnx", helper.make_node("AveragePool", ["x"], ["y"],
                                                                         kernel_shape=[1, 1], pads=[200, 200, 200, 200])),
        "conv-pads": _save(f"{d}/conv.onnx", helper.make_node("Conv", ["x", "w"], ["y"], pads=[p, p, p, p]),
                           _w((1, 1, 1, 1))),
        "conv-channels": _save(f"{d}/convc.onnx", helper.make_node("Conv", ["x", "w"], ["y"], pads=[300] * 4),
                               _w((16384, 1, 1, 1))),
        "conv-taps": _save(f"{d}/convt.onnx", helper.make_node("Conv", ["x", "w"], ["y"], pads=[1000] * 4),
                           _w((1, 1, 100, 100))),
        "convtranspose-strides": _save(f"{d}/ct.onnx", helper.make_node("ConvTranspose", ["x", "w"], ["y"],
                                                                        strides=[60000, 60000]), _w((1, 1, 1, 1))),
        "convtranspose-channels": _save(f"{d}/ctc.onnx", helper.make_node("ConvTranspose", ["x", "w"], ["y"],
                                                                          strides=[800, 800]), _w((1, 4096, 1, 1))),
        "convtranspose-output-padding": _save(f"{d}/cto.onnx", helper.make_node(
            "ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_padding=[60000, 60000]), _w((1, 1, 1, 1))),
    }


@pytest.mark.parametrize("optimize", ["1", "0"])
def test_window_sizes_from_a_module_file_are_bounded(tmp_path, optimize):
    cases = _cases(str(tmp_path))
    records = run_in_child(_LIMITED_CALL, *cases.values(), env={**os.environ, "HUBKIT_OPTIMIZE": optimize})
    for label, path in cases.items():
        record = records[path]
        assert record["outcome"] == "hubkit", (label, record)
        assert "the limit is 2147483648" in record["error"], (label, record)


def _transpose(path: str, x_shape, **attrs) -> str:
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) + 1, "w")
    return _save(path, helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs), [w], x_shape)


_CALL = r'''
for path in sys.argv[1:]:
    def call(path=path):
        y = hk.Module(path)(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) + 1, as_dict=True)["y"]
        print(json.dumps({"label": "shape:" + path, "shape": list(np.asarray(y).shape)}), flush=True)
    attempt(path, call)
'''


def test_transposed_convolution_output_shape_beyond_the_full_output_is_refused(tmp_path):
    paths = []
    for name, size in [("8", [8, 8]), ("9", [9, 9]), ("12", [12, 12]), ("one-axis", [6, 7]), ("huge", [60000, 60000])]:
        for shape, kind in [([1, 1, 3, 3], "static"), ([None, 1, None, None], "dynamic")]:
            paths.append(_transpose(str(tmp_path / f"{name}-{kind}.onnx"), shape, strides=[2, 2], output_shape=size))
    records = run_in_child(_CALL, *paths)
    for path in paths:
        assert records[path]["outcome"] == "hubkit", records[path]
        assert "larger than the full output" in records[path]["error"], records[path]


def test_transposed_convolution_with_same_padding_and_wide_strides_matches_onnx_runtime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import hubkit as hk

    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) + 1
    for i, (strides, auto_pad) in enumerate([([3, 3], "SAME_UPPER"), ([4, 4], "SAME_LOWER"), ([5, 2], "SAME_UPPER"),
                                             ([2, 2], "SAME_UPPER"), ([1, 1], "SAME_LOWER")]):
        for shape in ([1, 1, 3, 3], [None, 1, None, None]):
            path = _transpose(str(tmp_path / f"same-{i}-{shape[0]}.onnx"), shape, strides=strides, auto_pad=auto_pad)
            expected = ort.InferenceSession(path).run(None, {"x": x})[0]
            got = np.asarray(hk.Module(path)(x, as_dict=True)["y"])
            assert got.shape == expected.shape, (strides, auto_pad, shape)
            np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_window_ops_within_the_limit_still_compute(tmp_path):
    import hubkit as hk

    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    pool = _save(str(tmp_path / "pool.onnx"), helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                                                pads=[1, 1, 1, 1]))
    y = np.asarray(hk.Module(pool)(x, as_dict=True)["y"])
    assert y.shape == (1, 1, 5, 5) and y.max() == 15
    t = _transpose(str(tmp_path / "t.onnx"), [None, 1, None, None], strides=[2, 2], output_shape=[6, 6])
    assert np.asarray(hk.Module(t)(np.ones((1, 1, 3, 3), np.float32), as_dict=True)["y"]).shape == (1, 1, 6, 6)
