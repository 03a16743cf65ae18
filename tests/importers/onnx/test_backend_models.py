"""The small models the onnx package ships converted from PyTorch, with their recorded inputs and outputs.

``onnx/backend/test/data/pytorch-converted`` and ``pytorch-operator``: every model whose ops hubkit imports
(108 of them; most are opset 6-9, so they also exercise the conversion to opset 21). Tolerance: rtol 1e-4,
atol 1e-5 against the outputs PyTorch recorded (float32, a few ops deep; the atol covers values near 0).
"""

from __future__ import annotations

import glob
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hubkit as hk
from hubkit.importers.onnx import SUPPORTED_OPS, signature_keys

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def _cases() -> list[str]:
    out = []
    for kind in ("pytorch-converted", "pytorch-operator"):
        for name in sorted(os.listdir(os.path.join(DATA, kind))):
            model = onnx.load(os.path.join(DATA, kind, name, "model.onnx"))
            if {n.op_type for n in model.graph.node} <= set(SUPPORTED_OPS):
                out.append(f"{kind}/{name}")
    return out


def _read(path: str) -> np.ndarray:
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


CASES = _cases()


def test_most_shipped_models_are_covered():
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES)
def test_recorded_outputs(case):
    directory = os.path.join(DATA, case)
    model = onnx.load(os.path.join(directory, "model.onnx"))
    module = hk.Module(os.path.join(directory, "model.onnx"))
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    inputs = [_read(p) for p in sorted(glob.glob(os.path.join(directory, "test_data_set_0", "input_*.pb")))]
    got = module(dict(zip(signature_keys(names, "input"), inputs)), as_dict=True)
    outputs = sorted(glob.glob(os.path.join(directory, "test_data_set_0", "output_*.pb")))
    for key, path in zip(signature_keys([o.name for o in model.graph.output], "output"), outputs):
        want = _read(path)
        np.testing.assert_allclose(np.asarray(got[key]), want, rtol=1e-4, atol=1e-5)
