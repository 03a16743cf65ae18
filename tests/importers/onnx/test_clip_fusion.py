"""ONNX ``Clip`` after a convolution: initializer bounds become constants, so ``Clip(0, 6)`` fuses as a ReLU6.

Each model is run by the optimised plan, the unoptimised plan and onnxruntime: the fused step must match
the unoptimised plan to the conv fusion's tolerance (no affine map folded here: the same products, so
within a few ulps of their scale) and onnxruntime to 1e-5 of the output's scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hubkit as hk
from hubkit.runtime.optimize import describe_signature_plan, set_optimize_enabled
from tests.importers.onnx.onnx_helpers import rel_err, run_ort, save


def _model(variant: str):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 9])]
    opset = 13
    if variant == "attributes":  # opset 6: the bounds are attributes
        clip = helper.make_node("Clip", ["y"], ["z"], min=0.0, max=6.0)
        opset = 6
    elif variant == "runtime_min":  # a bound computed at run time stays a tensor
        inputs.append(helper.make_tensor_value_info("lo", TensorProto.FLOAT, []))
        clip = helper.make_node("Clip", ["y", "lo"], ["z"])
    else:
        inits.append(numpy_helper.from_array(np.array(0, np.float32), "lo"))
        names = ["y", "lo"]
        if variant == "initializers_0_6":
            inits.append(numpy_helper.from_array(np.array(6, np.float32), "hi"))
            names.append("hi")
        clip = helper.make_node("Clip", names, ["z"])
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1]),
        clip,
        helper.make_node("MaxPool", ["z"], ["p"], kernel_shape=[3, 3], strides=[2, 2], **({"ceil_mode": 1} if opset >= 10 else {})),
    ]
    out = helper.make_tensor_value_info("p", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "clip", inputs, [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("variant", ["initializers_0_6", "initializers_0", "attributes", "runtime_min"])
def test_clip_after_conv_fuses_and_matches(variant, tmp_path):
    path = save(_model(variant), str(tmp_path))
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((2, 3, 9, 9)).astype(np.float32) * 2}
    if variant == "runtime_min":
        feeds["lo"] = np.array(0.5, np.float32)
    module = hk.Module(path)
    keys = list(module.get_input_info_dict())
    plan = describe_signature_plan(module)
    if variant != "runtime_min":
        assert "OnnxConv+Maximum" in plan, plan
    args = {k: feeds[k] for k in keys}
    got = module(args, as_dict=True)
    set_optimize_enabled(False)
    try:
        plain = hk.Module(path)(args, as_dict=True)
    finally:
        set_optimize_enabled(None)
    (key,) = got
    want = run_ort(path, feeds)[0]
    scale = float(np.abs(plain[key]).max())
    np.testing.assert_allclose(got[key], plain[key], rtol=0, atol=64 * np.finfo(np.float32).eps * scale)
    assert rel_err(got[key], want) < 1e-5
    if "6" in variant or variant == "attributes":
        assert float(got[key].max()) <= 6.0
