"""Every corruption of a module directory raises FormatError naming the file and the problem."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.safetensors_io import write_store


@pytest.fixture
def module_dir(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\nb\n")

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 4], name="x")
        hk.add_asset(tmp_path / "vocab.txt")
        y = hk.layers.dense(x, 2, name="dense") * hk.constant([1.0, 2.0], name="scale")
        hk.add_signature(inputs=x, outputs=y)

    path = tmp_path / "module"
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


def _graph(path) -> pb.ModuleGraph:
    return pb.ModuleGraph.FromString((path / "graph.pb").read_bytes())


def _write_graph(path, graph: pb.ModuleGraph) -> None:
    (path / "graph.pb").write_bytes(graph.SerializeToString())


def _load(path):
    return hk.Module(str(path))


def test_intact_module_loads(module_dir):
    assert _load(module_dir)(np.zeros((1, 4))).shape == (1, 2)


def test_missing_marker(module_dir):
    os.remove(module_dir / "hubkit_module.pb")
    with pytest.raises(hk.FormatError, match=r"has no hubkit_module.pb"):
        _load(module_dir)


def test_corrupt_marker(module_dir):
    (module_dir / "hubkit_module.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(hk.FormatError, match=r"hubkit_module.pb' is corrupt"):
        _load(module_dir)


def test_unknown_format_version(module_dir):
    (module_dir / "hubkit_module.pb").write_bytes(pb.ModuleDef(format=2, producer="future").SerializeToString())
    with pytest.raises(hk.FormatError, match="format version 2; this version of hubkit reads only format 1"):
        _load(module_dir)


def test_unknown_required_feature(module_dir):
    marker = pb.ModuleDef(format=1, required_features=["sparse_v9"], producer="hubkit 9")
    (module_dir / "hubkit_module.pb").write_bytes(marker.SerializeToString())
    with pytest.raises(hk.FormatError, match=r"requires the features \['sparse_v9'\]"):
        _load(module_dir)


def test_missing_graph(module_dir):
    os.remove(module_dir / "graph.pb")
    with pytest.raises(hk.FormatError, match=r"graph.pb' cannot be read"):
        _load(module_dir)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_graph(module_dir, keep):
    data = (module_dir / "graph.pb").read_bytes()
    (module_dir / "graph.pb").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(hk.FormatError, match=r"graph.pb' is (truncated|corrupt)"):
        _load(module_dir)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_graph(module_dir, seed):
    (module_dir / "graph.pb").write_bytes(np.random.default_rng(seed).bytes(500))
    with pytest.raises(hk.FormatError, match=r"graph.pb"):
        _load(module_dir)


def test_unknown_op(module_dir):
    graph = _graph(module_dir)
    next(n for n in graph.variants[0].nodes if n.op == "MatMul").op = "FancyMatMul"
    _write_graph(module_dir, graph)
    with pytest.raises(hk.FormatError, match=r"graph.pb.*unknown op 'FancyMatMul'"):
        _load(module_dir)


def test_input_of_missing_node(module_dir):
    graph = _graph(module_dir)
    next(n for n in graph.variants[0].nodes if n.op == "MatMul").inputs[0] = "nowhere:0"
    _write_graph(module_dir, graph)
    with pytest.raises(hk.FormatError, match=r"reads 'nowhere:0', which is not an earlier node"):
        _load(module_dir)


def test_signature_feeding_one_placeholder_twice(module_dir):
    graph = _graph(module_dir)
    signature = graph.variants[0].signatures[0]
    extra = signature.inputs.add()
    extra.CopyFrom(signature.inputs[0])
    extra.key = "again"
    _write_graph(module_dir, graph)
    with pytest.raises(hk.FormatError, match=r"graph.pb.*inputs 'again' and 'default' are the same placeholder 'x:0'"):
        _load(module_dir)


def test_corrupt_array_attribute(module_dir):
    graph = _graph(module_dir)
    const = next(n for n in graph.variants[0].nodes if n.name == "scale")
    entry = next(e for e in const.attrs.entries if e.key == "value")
    entry.value.tensor.content = entry.value.tensor.content[:-1]
    _write_graph(module_dir, graph)
    with pytest.raises(hk.FormatError, match=r"graph.pb.*node 'scale'.*holds 7 bytes; float32 of shape \[2\] needs 8"):
        _load(module_dir)


def test_graph_whose_shapes_no_longer_infer(module_dir):
    graph = _graph(module_dir)
    x = next(n for n in graph.variants[0].nodes if n.name == "x")
    shape = next(e for e in x.attrs.entries if e.key == "shape")
    shape.value.tuple.items[1].i = 7  # x is now [None, 7]; the kernel is [4, 2]
    sig_input = graph.variants[0].signatures[0].inputs[0]
    sig_input.shape.dims[1] = 7
    _write_graph(module_dir, graph)
    with pytest.raises(hk.FormatError, match=r"graph.pb.*MatMul node 'dense/MatMul'"):
        _load(module_dir)


def test_variable_of_wrong_shape(module_dir):
    write_store(str(module_dir / "variables"), {
        "dense/kernel": np.zeros((3, 2), np.float32), "dense/bias": np.zeros(2, np.float32)})
    with pytest.raises(hk.FormatError, match=r"variables.safetensors' stores 'dense/kernel' as float32 \[3, 2\], "
                                             r"but the graph declares float32 \[4, 2\]"):
        _load(module_dir)


def test_variable_of_wrong_dtype(module_dir):
    write_store(str(module_dir / "variables"), {
        "dense/kernel": np.zeros((4, 2), np.float64), "dense/bias": np.zeros(2, np.float32)})
    with pytest.raises(hk.FormatError, match=r"stores 'dense/kernel' as float64"):
        _load(module_dir)


def test_missing_and_extra_variables(module_dir):
    write_store(str(module_dir / "variables"), {"dense/kernel": np.zeros((4, 2), np.float32)})
    with pytest.raises(hk.FormatError, match=r"no value for the variable 'dense/bias'"):
        _load(module_dir)
    write_store(str(module_dir / "variables"), {
        "dense/kernel": np.zeros((4, 2), np.float32), "dense/bias": np.zeros(2, np.float32),
        "stray": np.zeros(1, np.float32)})
    with pytest.raises(hk.FormatError, match=r"unknown variables \['stray'\]"):
        _load(module_dir)


def test_missing_variables_file(module_dir):
    os.remove(module_dir / "variables" / "variables.safetensors")
    with pytest.raises(hk.FormatError, match=r"variables.safetensors' is missing"):
        _load(module_dir)


@pytest.mark.parametrize("cut", [4, 20, -3])
def test_truncated_variables_file(module_dir, cut):
    path = module_dir / "variables" / "variables.safetensors"
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(hk.FormatError, match=r"variables.safetensors' is (corrupt or )?truncated"):
        _load(module_dir)


def test_corrupt_variables_header(module_dir):
    path = module_dir / "variables" / "variables.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe{["
    path.write_bytes(bytes(data))
    with pytest.raises(hk.FormatError, match=r"corrupt safetensors header"):
        _load(module_dir)


def test_asset_escaping_assets_dir(module_dir):
    graph = _graph(module_dir)
    variant = graph.variants[0]
    variant.assets[0].filename = "../graph.pb"
    node = next(n for n in variant.nodes if n.op == "AssetPath")
    next(e for e in node.attrs.entries if e.key == "filename").value.s = "../graph.pb"
    _write_graph(module_dir, graph)
    with pytest.raises(hk.FormatError, match=r"asset name '../graph.pb' is not a plain file name inside assets/"):
        _load(module_dir)


def test_asset_symlink_escaping_assets_dir(module_dir, tmp_path):
    (tmp_path / "secret").write_text("s")
    os.remove(module_dir / "assets" / "vocab.txt")
    os.symlink(tmp_path / "secret", module_dir / "assets" / "vocab.txt")
    with pytest.raises(hk.FormatError, match=r"asset 'vocab.txt' resolves to .*secret', outside assets/"):
        _load(module_dir)


def test_missing_asset(module_dir):
    os.remove(module_dir / "assets" / "vocab.txt")
    with pytest.raises(hk.FormatError, match=r"asset file .*vocab.txt' is missing"):
        _load(module_dir)


def test_not_a_module_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(hk.FormatError, match="is not a hubkit module"):
        hk.load_module_spec(str(tmp_path / "empty"))


def test_loading_never_unpickles(module_dir, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(np, "load", refuse)
    assert _load(module_dir)(np.zeros((1, 4))).shape == (1, 2)
    shutil.rmtree(module_dir)
