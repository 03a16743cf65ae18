"""Shared helpers of the ONNX tests: the onnx package's CNN topologies with random weights, and ORT runs."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
CNN_MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
              "squeezenet", "vgg19", "zfnet512"]


def light_model(name: str, seed: int = 0, drop_softmax: bool = True) -> onnx.ModelProto:
    """The onnx package's ``light_<name>.onnx`` with random weights put in.

    The shipped files replace every weight by a ``ConstantOfShape`` placeholder (one value everywhere);
    each becomes a random initializer: He-scaled normal for filters and matrices, uniform in [0.5, 1.5]
    for vectors (so batch-norm variances stay positive). The final Softmax is dropped by default: its
    saturated output would hide differences in the logits.
    """
    m = onnx.load(os.path.join(LIGHT_DIR, f"light_{name}.onnx"))
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = numpy_helper.to_array(inits[n.input[0]])
            m.graph.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), n.output[0]))
        else:
            nodes.append(n)
    if drop_softmax and nodes[-1].op_type == "Softmax":
        m.graph.output[0].name = nodes[-1].input[0]
        nodes.pop()
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = []
    for t in m.graph.initializer:
        if t.name not in used:
            continue
        a = numpy_helper.to_array(t)
        if a.dtype == np.float32:
            if a.ndim >= 2:
                a = rng.standard_normal(a.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / np.prod(a.shape[1:])))
            else:
                a = rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
        kept.append(numpy_helper.from_array(a, t.name))
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    names = {t.name for t in kept}
    inputs = [i for i in m.graph.input if i.name not in names and i.name in used]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    m.ir_version = max(m.ir_version, 4)  # IR 3 wants every initializer listed as an input too
    return m


def save(model: onnx.ModelProto, directory: str, external: bool = False) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "model.onnx")
    if external:
        onnx.save(model, path, save_as_external_data=True, location="weights.bin")
    else:
        onnx.save(model, path)
    return path


def run_ort(path_or_model, feeds: dict) -> list[np.ndarray]:
    """onnxruntime's outputs (one thread, no graph optimisations that change numerics beyond basic ones)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    src = path_or_model if isinstance(path_or_model, str) else path_or_model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: one number comparable across layers and models."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.abs(want).max() if want.size else 1.0
    return float(np.abs(got - want).max() / (scale or 1.0)) if want.size else 0.0
