"""ONNX import: signature names, variables, fine-tuning, external data, refusals, the optional extra."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hubkit as hk
from hubkit.importers.onnx import signature_keys
from tests.importers.onnx.onnx_helpers import rel_err, run_ort

rng = np.random.default_rng(0)


def small_cnn(input_name="input:0", output_name="/head/logits") -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, with a dynamic batch dimension."""
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "conv.weight")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.bias")
    fc = numpy_helper.from_array(rng.standard_normal((2, 4)).astype(np.float32), "fc.weight")
    nodes = [
        helper.make_node("Conv", [input_name, "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight"], [output_name], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 2])], initializer=[w, b, fc])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_signature_keys_mapping():
    assert signature_keys(["x", "input:0", "", "x", "-a", "/y/z"], "input") == [
        "x", "input_0", "input_2", "x_1", "_-a", "_y_z"]


def test_default_signature_uses_the_graph_names_and_keeps_the_batch_dynamic(tmp_path):
    model = small_cnn()
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    m = hk.Module(path)
    assert m.get_signature_names() == ["default"]
    assert list(m.get_input_info_dict()) == ["input_0"]
    assert list(m.get_output_info_dict()) == ["_head_logits"]
    assert m.get_input_info_dict()["input_0"].get_shape() == (None, 3, 8, 8)
    x = rng.standard_normal((5, 3, 8, 8)).astype(np.float32)
    (want,) = run_ort(path, {"input:0": x})
    assert rel_err(m(x, as_dict=True)["_head_logits"], want) <= 1e-5
    assert sorted(v.name.split("/", 1)[1] for v in m.variables) == ["conv.bias", "conv.weight", "fc.weight"]


def test_convert_writes_a_hubkit_module(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(small_cnn("x", "y"), path)
    out = hk.convert(path, tmp_path / "converted")
    assert hk.load_module_spec(out).get_input_info_dict()["x"].dtype is hk.float32
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert rel_err(hk.Module(out)(x, as_dict=True)["y"], run_ort(path, {"x": x})[0]) <= 1e-5


def test_fine_tuning_reaches_the_initializers(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(small_cnn("x", "y"), path)
    m = hk.Module(path, trainable=True)
    assert len(m.trainable_variables) == 3
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    target = rng.standard_normal((4, 2)).astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        xp = hk.placeholder(hk.float32, [None, 3, 8, 8])
        loss = hk.reduce_mean(hk.square(m(xp, as_dict=True)["y"] - target))
        grads = hk.gradients(loss, m.trainable_variables)
    sess = hk.Session(g)
    assert all(gr is not None for gr in grads)
    values = sess.run([loss, *grads], {xp: x})
    assert all(np.abs(v).max() > 0 for v in values[1:])
    before = values[0]
    for var, grad in zip(m.trainable_variables, values[1:]):
        var.assign(var.value - 0.05 * grad)
    assert sess.run(loss, {xp: x}) < before


def test_unsupported_ops_are_listed_in_one_error(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"),
             helper.make_node("Celu", ["a"], ["b"], name="celu_1"),
             helper.make_node("Celu", ["b"], ["c"], name="celu_2"),
             helper.make_node("Mish", ["c"], ["y"], name="mish")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(hk.FormatError) as e:
        hk.convert(path, tmp_path / "out")
    assert "Celu (nodes ['celu_1', 'celu_2'])" in str(e.value) and "Mish (nodes ['mish'])" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unsupported_dtype_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2])])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(hk.FormatError, match="FLOAT16"):
        hk.Module(path)


def test_external_data_outside_the_model_directory_is_refused(tmp_path):
    model = small_cnn("x", "y")
    (tmp_path / "d").mkdir()
    onnx.save(model, str(tmp_path / "d" / "m.onnx"), save_as_external_data=True, location="w.bin",
              size_threshold=0)
    loaded = onnx.load(str(tmp_path / "d" / "m.onnx"), load_external_data=False)
    for t in loaded.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../w.bin"
    (tmp_path / "w.bin").write_bytes((tmp_path / "d" / "w.bin").read_bytes())
    onnx.save(loaded, str(tmp_path / "d" / "m.onnx"))
    with pytest.raises(hk.FormatError, match="not a file inside the model directory"):
        hk.Module(str(tmp_path / "d" / "m.onnx"))


def test_a_directory_holding_the_model_and_its_data_loads(tmp_path):
    model = small_cnn("x", "y")
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert rel_err(hk.Module(str(tmp_path))(x, as_dict=True)["y"], run_ort(str(tmp_path / "m.onnx"), {"x": x})[0]) <= 1e-5


def test_garbage_is_refused(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(hk.FormatError):
        hk.Module(str(p))


def test_import_hubkit_does_not_import_onnx():
    code = "import sys, hubkit; hubkit.Module; assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_extra_names_it(monkeypatch):
    from hubkit.importers.onnx import require_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'hubkit-ml\[onnx\]'") as e:
        require_onnx()
    assert isinstance(e.value, hk.HubkitError)


@pytest.mark.parametrize("node,inits", [
    (helper.make_node("ConstantOfShape", ["s"], ["c"]), [numpy_helper.from_array(np.array([1 << 20, 1 << 20]), "s")]),
    (helper.make_node("Range", ["a", "b", "d"], ["c"]), [numpy_helper.from_array(np.array(0, np.int64), "a"),
                                                          numpy_helper.from_array(np.array(1 << 40, np.int64), "b"),
                                                          numpy_helper.from_array(np.array(1, np.int64), "d")]),
])
def test_import_time_constants_are_bounded(tmp_path, node, inits):
    nodes = [node, helper.make_node("Shape", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", TensorProto.INT64, [None])],
                              initializer=inits)
    path = str(tmp_path / "bomb.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    with pytest.raises(hk.FormatError, match="limit is"):
        hk.Module(path)
