"""Review 5: explicit paddings from a module file must be what the builders accept (two pairs of integers >= 0).

The builders refuse a negative pad, but a hubkit ``graph.pb`` and a TF1 ``saved_model.pb`` were only checked for
window, stride and dilation sizes. A negative pad then reached the fused convolution kernels of the optimised plan:
the direct RGB kernel (:mod:`hubkit.ops._conv_small`) copies the input into a padded block at the pad offsets, and
with a negative top pad NumPy's negative slicing put a one-row image into the wrong row of that block, so the
(default) optimised plan of a TF1 CNN returned numbers where the unoptimised one failed: a silent wrong result.
Other odd paddings failed at call time with broadcasting errors that named the pool step instead of the
convolution. Every hostile module is loaded and called in a child process.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from tests.security.hostile import run_in_child

TF1_CNN = os.path.join(os.path.dirname(__file__), "..", "data", "tf1", "cnn_batch_norm")

_CALL = r'''
for path in sys.argv[1:]:
    def call(path=path):
        m = hk.Module(path)
        h, w = (1, 1) if "one-pixel" in path else (16, 16)
        np.asarray(m(np.random.RandomState(0).rand(4, h, w, 3).astype(np.float32))).sum()
    attempt(path, call)
'''


def _set_padding(value: pb.AttrValue, padding) -> None:
    value.Clear()
    if isinstance(padding, str):
        value.s = padding
        return
    for row in padding:
        item = value.list.items.add()
        if isinstance(row, (list, tuple)):
            for p in row:
                item.list.items.add().i = p
        else:
            item.i = row


def _hubkit_module(path: str, padding, op: str = "Conv2D") -> str:
    """An RGB 3x3 convolution, bias, ReLU and 2x2 max pool (the direct kernel's chain) whose ``op`` node's padding
    is patched in graph.pb."""

    def module_fn():
        x = hk.placeholder(hk.float32, [None, None, None, 3], name="x")
        w = hk.constant(np.random.RandomState(0).randn(3, 3, 3, 8).astype(np.float32))
        y = hk.nn.conv2d(x, w, strides=1, padding=[[1, 1], [1, 1]])
        y = hk.nn.relu(y + hk.constant(np.ones(8, np.float32)))
        hk.add_signature(inputs=x, outputs=hk.nn.max_pool2d(y, 2, 2, "VALID"))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    with open(os.path.join(path, "graph.pb"), "rb") as f:
        g = pb.ModuleGraph.FromString(f.read())
    hit = 0
    for node in g.variants[0].nodes:
        if node.op == op:
            for entry in node.attrs.entries:
                if entry.key == "padding":
                    _set_padding(entry.value, padding)
                    hit += 1
    assert hit == 1, (op, hit)
    with open(os.path.join(path, "graph.pb"), "wb") as f:
        f.write(g.SerializeToString())
    return path


def _tf1_module(path: str, explicit: list[int], op: str = "Conv2D") -> str:
    """The TF1 ``cnn_batch_norm`` CNN (RGB 3x3 convolution, batch norm, ReLU, 2x2 max pool: fused into the direct
    kernel) with EXPLICIT ``explicit_paddings`` on its first ``op`` node and any image size."""
    shutil.copytree(TF1_CNN, path)
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    for node in sm.meta_graphs[0].graph_def.node:
        if node.name == {"Conv2D": "conv1/Conv2D", "MaxPool": "MaxPool2d"}[op]:
            node.attr["padding"].s = b"EXPLICIT"
            node.attr["explicit_paddings"].list.i[:] = explicit
        if node.op == "Placeholder":
            for dim in node.attr["shape"].shape.dim[1:3]:
                dim.size = -1
    for dim in sm.meta_graphs[0].signature_def["default"].inputs["images"].tensor_shape.dim[1:3]:
        dim.size = -1
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(sm.SerializeToString())
    return path


_HUBKIT_PADS = [
    ("one-pixel-top-crop", [[-2, 5], [1, 1]]),  # the optimised plan put the one row into row 2 of the block
    ("both-negative", [[-1, 1], [-1, 1]]),
    ("bottom-negative", [[0, -1], [0, 0]]),
    ("left-negative", [[0, 0], [-2, 0]]),
    ("huge-negative", [[-(2**40), 0], [0, 0]]),
    ("lower-case", "same"),
    ("unknown-word", "EXPLICIT"),
    ("one-pair", [[1, 1]]),
    ("three-pads", [[1, 1, 1], [1, 1]]),
    ("flat", [1, 1]),
]


def test_hubkit_convolution_paddings_from_graph_pb_are_checked_at_load(tmp_path):
    paths = [_hubkit_module(str(tmp_path / name), padding) for name, padding in _HUBKIT_PADS]
    paths.append(_hubkit_module(str(tmp_path / "pool-negative"), [[-1, 1], [0, 0]], op="MaxPool"))
    records = run_in_child(_CALL, *paths)
    for path in paths:
        record = records[path]
        assert record["outcome"] == "hubkit", record
        assert "padding must be" in record["error"] and "graph.pb" in record["error"], record


_TF1_PADS = [
    ("one-pixel-top-crop", [0, 0, -2, 9, -2, 9, 0, 0]),  # optimised: a result; unoptimised: an error
    ("both-negative", [0, 0, -1, 1, -1, 1, 0, 0]),
    ("bottom-negative", [0, 0, 0, -1, 0, 0, 0, 0]),
    ("right-negative", [0, 0, 1, 1, 1, -3, 0, 0]),
    ("huge-negative", [0, 0, -(2**40), 0, 0, 0, 0, 0]),
    ("batch-pad", [1, 1, 1, 1, 1, 1, 0, 0]),  # TF refuses these; hubkit ignored them
    ("channel-pad", [0, 0, 1, 1, 1, 1, 0, 2]),
]


def test_tf1_explicit_paddings_are_checked_at_load(tmp_path):
    paths = [_tf1_module(str(tmp_path / f"tf1-{name}"), pads) for name, pads in _TF1_PADS]
    paths.append(_tf1_module(str(tmp_path / "tf1-pool-negative"), [0, 0, -1, 1, 0, 0, 0, 0], op="MaxPool"))
    for optimize in ("1", "0"):
        records = run_in_child(_CALL, *paths, env={**os.environ, "HUBKIT_OPTIMIZE": optimize,
                                                   "HUBKIT_CACHE_DIR": str(tmp_path / "cache")})
        for path in paths:
            record = records[path]
            assert record["outcome"] == "hubkit", (optimize, record)
            assert "explicit_paddings must be >= 0" in record["error"], (optimize, record)


def test_plain_explicit_paddings_still_load_and_agree_with_the_unoptimised_plan(tmp_path):
    paths = [
        _hubkit_module(str(tmp_path / "hubkit-ok"), [[1, 1], [0, 2]]),
        _tf1_module(str(tmp_path / "tf1-ok"), [0, 0, 1, 1, 0, 2, 0, 0]),
        _tf1_module(str(tmp_path / "tf1-ok-one-pixel"), [0, 0, 4, 5, 4, 5, 0, 0]),
    ]
    sums: dict[str, list[float]] = {}
    for optimize in ("1", "0"):
        env = {**os.environ, "HUBKIT_OPTIMIZE": optimize, "HUBKIT_CACHE_DIR": str(tmp_path / "cache")}
        records = run_in_child(_CALL + _SUMS, *paths, env=env)
        for path in paths:
            assert records[path]["outcome"] == "ok", records[path]
            sums.setdefault(path, []).append(records["sum:" + path]["sum"])
    for path, (optimised, plain) in sums.items():
        assert optimised == pytest.approx(plain, rel=1e-5), path


_SUMS = r'''
for path in sys.argv[1:]:
    m = hk.Module(path)
    h, w = (1, 1) if "one-pixel" in path else (16, 16)
    y = np.asarray(m(np.random.RandomState(0).rand(4, h, w, 3).astype(np.float32)))
    print(json.dumps({"label": "sum:" + path, "sum": float(np.nansum(y))}), flush=True)
'''


_LIMITED = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
'''


@pytest.mark.parametrize("optimize", ["1", "0"])
def test_huge_explicit_paddings_are_bounded_like_a_pad(tmp_path, optimize):
    """Pads of 30,000 on a 16x16 image asked for 13+ GiB per array on the first call (review 4's bound covered Pad,
    not the pads of a convolution or pool)."""
    p = 30000
    paths = [
        _hubkit_module(str(tmp_path / "hubkit-conv"), [[p, p], [p, p]]),
        _hubkit_module(str(tmp_path / "hubkit-conv-one-side"), [[0, 2**31], [0, 0]]),
        _hubkit_module(str(tmp_path / "hubkit-pool"), [[p, p], [p, p]], op="MaxPool"),
        _tf1_module(str(tmp_path / "tf1-conv"), [0, 0, p, p, p, p, 0, 0]),
        _tf1_module(str(tmp_path / "tf1-conv-one-side"), [0, 0, 2**31, 0, 0, 0, 0, 0]),
        _tf1_module(str(tmp_path / "tf1-pool"), [0, 0, p, p, p, p, 0, 0], op="MaxPool"),
    ]
    records = run_in_child(_LIMITED + _CALL, *paths, env={**os.environ, "HUBKIT_OPTIMIZE": optimize,
                                                          "HUBKIT_CACHE_DIR": str(tmp_path / "cache")})
    for path in paths:
        record = records[path]
        assert record["outcome"] == "hubkit", record
        assert "the limit is 2147483648" in record["error"], record
