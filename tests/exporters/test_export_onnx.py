"""hk.export_onnx and `hubkit export-onnx`: checked models that onnxruntime runs to hubkit's outputs (<= 1e-5)."""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest

import hubkit as hk
from hubkit.cli import main
from tests.importers.onnx.onnx_helpers import light_model, rel_err, run_ort, save

rng = np.random.default_rng(0)
SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "..", "scripts")


def mlp_module():
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 10], name="features")
        h = hk.layers.dense(x, 32, activation="relu")
        hk.add_signature(inputs={"features": x}, outputs={"probs": hk.nn.softmax(hk.layers.dense(h, 3)),
                                                          "hidden": h})

    return hk.Module(hk.create_module_spec(module_fn))


def cnn_module():
    sys.path.insert(0, SCRIPTS)
    try:
        import export_image_features
    finally:
        sys.path.remove(SCRIPTS)
    return hk.Module(export_image_features.make_module_spec(32, 0))


def embedding_module():
    """Text-embedding style, on ids: a table lookup, a mean over the tokens, an L2 normalisation."""
    table = rng.standard_normal((50, 16)).astype(np.float32)

    def module_fn():
        ids = hk.placeholder(hk.int64, [None, None], name="ids")
        emb = hk.reduce_mean(hk.gather(hk.Variable(table, name="embeddings"), ids), axis=1)
        hk.add_signature(inputs={"ids": ids}, outputs={"default": hk.nn.l2_normalize(emb, axis=-1)})

    return hk.Module(hk.create_module_spec(module_fn))


def _check(module, path, feeds, signature="default"):
    out = hk.export_onnx(module, path, signature=signature)
    assert out == os.path.abspath(path)
    onnx.checker.check_model(out, full_check=True)
    want = run_ort(out, feeds)
    got = module(feeds, signature=signature, as_dict=True)
    names = [o.name for o in onnx.load(out, load_external_data=False).graph.output]
    for name, w in zip(names, want):
        key = name[: -len("_output")] if name.endswith("_output") and name[: -len("_output")] in got else name
        assert rel_err(got[key], w) <= 1e-5, name
    return out


def test_mlp(tmp_path):
    path = _check(mlp_module(), str(tmp_path / "mlp.onnx"), {"features": rng.random((7, 10), np.float32)})
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 10  # the batch stays dynamic


def test_cnn(tmp_path):
    _check(cnn_module(), str(tmp_path / "cnn.onnx"), {"images": rng.random((3, 32, 32, 3), np.float32)})


def test_embedding(tmp_path):
    _check(embedding_module(), str(tmp_path / "emb.onnx"), {"ids": rng.integers(0, 50, (4, 6))})


def test_imported_onnx_model_exported_again(tmp_path):
    src = save(light_model("squeezenet"), str(tmp_path / "src"), external=True)
    module = hk.Module(src)
    (key,) = module.get_input_info_dict()
    out = _check(module, str(tmp_path / "out" / "squeezenet.onnx"),
                 {key: rng.standard_normal((1, 3, 224, 224)).astype(np.float32)})
    assert os.path.isfile(out + ".data")  # large initializers are external data beside the model


def test_string_ops_are_refused_naming_each(tmp_path):
    def module_fn():
        s = hk.placeholder(hk.string, [None], name="sentences")
        hk.add_signature(inputs=s, outputs=hk.text.whitespace_tokenize(hk.text.lower(s)).values)

    with pytest.raises(hk.FormatError, match="no faithful ONNX form") as e:
        hk.export_onnx(hk.Module(hk.create_module_spec(module_fn)), str(tmp_path / "t.onnx"))
    assert "Lower" in str(e.value) and "Placeholder" not in str(e.value)
    assert not os.listdir(tmp_path)  # nothing half-written


def test_bad_opset_and_signature(tmp_path):
    with pytest.raises(hk.FormatError, match="opsets 14 to 21"):
        hk.export_onnx(mlp_module(), str(tmp_path / "m.onnx"), opset=9)
    with pytest.raises(hk.SignatureError, match="no signature 'nope'"):
        hk.export_onnx(mlp_module(), str(tmp_path / "m.onnx"), signature="nope")


def test_cli_export_onnx(tmp_path, capsys):
    src = tmp_path / "mlp"
    mlp_module().export(str(src))
    out = tmp_path / "mlp.onnx"
    assert main(["export-onnx", str(src), str(out), "--opset", "17"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    x = rng.random((2, 10), np.float32)
    assert rel_err(run_ort(str(out), {"features": x})[0], hk.Module(str(src))(x, as_dict=True)["probs"]) <= 1e-5
