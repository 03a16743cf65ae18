"""The real CNN topologies shipped in the onnx package, with random weights, against onnxruntime.

Tolerance: relative error (max abs difference over max abs reference) <= 1e-4 for every model. These are
float32 nets 8 (AlexNet) to 121 (DenseNet) layers deep; hubkit and onnxruntime sum the same products in
different orders (im2col + BLAS against ORT's own kernels), which leaves ~1e-7 per layer, growing with
depth to ~1e-6 at the logits (measured: 1.7e-7 SqueezeNet ... 1.3e-6 VGG-19). 1e-4 is well above that and
far below any real bug (a wrong pad or stride gives errors of order 1).
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from tests.importers.onnx.onnx_helpers import CNN_MODELS, light_model, rel_err, run_ort, save

HEAVY = {"bvlc_alexnet", "densenet121", "inception_v2", "vgg19", "zfnet512"}  # 6-40 s each on a loaded 2-core box


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in CNN_MODELS])
def test_cnn_matches_onnxruntime(name, tmp_path):
    model = light_model(name)
    src = save(model, str(tmp_path / "src"), external=True)
    dst = hk.convert(src, tmp_path / "converted")
    module = hk.Module(dst)
    (key,) = module.get_input_info_dict()
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    got = module({key: x}, as_dict=True)
    (want,) = run_ort(src, {model.graph.input[0].name: x})
    (out,) = got.values()
    assert rel_err(out, want) <= 1e-4


def test_squeezenet_loads_directly_and_keeps_external_data_mapped(tmp_path):
    src = save(light_model("squeezenet"), str(tmp_path), external=True)
    module = hk.Module(src)
    large = [v.value for v in module.variables if v.value.nbytes > 64 * 1024]  # smaller ones are read inline
    assert large and all(isinstance(v, np.memmap) for v in large)
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    (out,) = module(x, as_dict=True).values()
    (want,) = run_ort(src, {light_model("squeezenet").graph.input[0].name: x})
    assert rel_err(out, want) <= 1e-4


def test_magika_production_model_when_installed():
    """magika (Apache-2.0) ships a real byte-classification model: a LayerNorm/attention-style net from JAX."""
    import os

    magika = pytest.importorskip("magika")  # not a test dependency: runs where magika is installed
    path = os.path.join(os.path.dirname(magika.__file__), "models", "standard_v3_3", "model.onnx")
    if not os.path.isfile(path):
        pytest.skip("this magika release has no standard_v3_3 model")
    x = np.random.default_rng(0).integers(0, 257, (3, 2048)).astype(np.int32)
    (want,) = run_ort(path, {"bytes": x})
    (got,) = hk.Module(path)(x, as_dict=True).values()
    assert rel_err(got, want) <= 1e-4
