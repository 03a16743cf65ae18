"""``hubkit convert SRC DST`` and ``hubkit info`` on TF1 modules."""

from __future__ import annotations

import os

import numpy as np

import hubkit as hk
from hubkit.cli import main
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from tests.importers.tf1.conftest import fixture_path


def test_convert_command_writes_a_hubkit_module(tmp_path, capsys):
    dst = str(tmp_path / "out")
    assert main(["convert", fixture_path("two_signatures"), dst]) == 0
    assert capsys.readouterr().out.strip() == dst
    x = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(hk.Module(dst)(x), hk.Module(fixture_path("two_signatures"))(x))


def test_convert_command_refuses_an_existing_target(tmp_path, capsys):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    assert main(["convert", fixture_path("two_signatures"), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hubkit: error:") and "already exists" in err
    assert (dst / "keep.txt").read_text() == "mine"


def test_info_lists_signatures_variables_and_ops(capsys):
    assert main(["info", fixture_path("mobilenet_block")]) == 0
    out = capsys.readouterr().out
    assert "signature 'image_feature_vector'" in out and "output MobilenetV2/layer_7/output: float32" in out
    assert "DepthwiseConv2dNative: 1 node(s), supported: yes" in out
    assert "RandomUniform" in out and "not needed" in out
    assert "MobilenetV2/expanded_conv/depthwise/depthwise_weights: float32 [3, 3, 8, 2]" in out


def test_info_names_unsupported_needed_ops(tf1_copy, capsys):
    path = tf1_copy("two_signatures")
    file = os.path.join(path, "saved_model.pb")
    with open(file, "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    next(n for n in sm.meta_graphs[0].graph_def.node if n.op == "Relu").op = "MysteryOp"
    with open(file, "wb") as f:
        f.write(sm.SerializeToString())
    assert main(["info", path]) == 0
    assert "MysteryOp: 1 node(s), supported: no (needed: the module does not load)" in capsys.readouterr().out
