"""Hand-corrupted graph.pb attributes and structure, and safetensors headers/indexes, raise FormatError.

Each test exports a small module, edits one thing in its files with protobuf or byte edits, and
checks that loading names the file and the problem.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.safetensors_io import INDEX_FILE, write_store


@pytest.fixture
def module_dir(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 4], name="x")
        y = hk.layers.dense(x, 2, name="dense") * hk.constant([1.0, 2.0], name="scale")
        hk.add_signature(inputs=x, outputs=y)

    path = tmp_path / "module"
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


def _graph(path) -> pb.ModuleGraph:
    return pb.ModuleGraph.FromString((path / "graph.pb").read_bytes())


def _write_graph(path, graph: pb.ModuleGraph) -> None:
    (path / "graph.pb").write_bytes(graph.SerializeToString())


def _node(graph: pb.ModuleGraph, name: str) -> pb.NodeDef:
    return next(n for n in graph.variants[0].nodes if n.name == name)


def _attr(node, key: str) -> pb.AttrValue:
    return next(e for e in node.attrs.entries if e.key == key).value


def _raises(path, match: str) -> None:
    """Both public entry points refuse the directory with a FormatError naming graph.pb or the store."""
    with pytest.raises(hk.FormatError, match=match):
        hk.load_module_spec(str(path))
    with pytest.raises(hk.FormatError, match=match):
        hk.Module(str(path))


# -- attrs.py --------------------------------------------------------------------------------------
def test_attribute_with_unknown_hubkit_dtype(module_dir):
    graph = _graph(module_dir)
    _attr(_node(graph, "x"), "dtype").dtype = "complex64"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*node 'x' attribute\['dtype'\] has the unknown dtype 'complex64'; "
                        r"expected one of \['bool', 'float32'")


def test_array_attribute_with_incomplete_shape(module_dir):
    graph = _graph(module_dir)
    _attr(_node(graph, "scale"), "value").tensor.shape.dims[0] = -1
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*node 'scale' attribute\['value'\] has the incomplete shape \(None,\); "
                        r"stored arrays need a full shape")


def test_array_attribute_with_unknown_element_dtype(module_dir):
    graph = _graph(module_dir)
    _attr(_node(graph, "scale"), "value").tensor.dtype = "bfloat16"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"node 'scale' attribute\['value'\] has the unknown dtype 'bfloat16'")


def test_string_array_attribute_with_wrong_count(module_dir):
    graph = _graph(module_dir)
    tensor = _attr(_node(graph, "scale"), "value").tensor
    tensor.dtype = "string"
    tensor.content = b""
    tensor.string_val.append("only one")
    _write_graph(module_dir, graph)
    _raises(module_dir, r"node 'scale' attribute\['value'\] holds 1 strings; its shape \[2\] needs 2")


def test_shape_with_unknown_rank_and_dimensions(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].signatures[0].inputs[0].shape.unknown_rank = True  # dims [-1, 4] stay
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*signature 'default' 'default' has unknown rank and dimensions \[-1, 4\]")


def test_shape_with_dimension_below_minus_one(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].signatures[0].outputs[0].shape.dims[0] = -5
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*has the invalid dimension -5")


def test_attribute_without_value(module_dir):
    graph = _graph(module_dir)
    _attr(_node(graph, "x"), "dtype").Clear()
    _write_graph(module_dir, graph)
    _raises(module_dir, r"node 'x' attribute\['dtype'\] has no value")


def test_repeated_attribute_key(module_dir):
    graph = _graph(module_dir)
    node = _node(graph, "x")
    extra = node.attrs.entries.add()
    extra.CopyFrom(node.attrs.entries[0])
    _write_graph(module_dir, graph)
    _raises(module_dir, rf"node 'x' attribute repeats the key {node.attrs.entries[0].key!r}")


# -- graph_codec.py --------------------------------------------------------------------------------
def test_graph_without_end_mark(module_dir):
    graph = _graph(module_dir)
    graph.end = ""
    _write_graph(module_dir, graph)
    _raises(module_dir, r"Module graph .*graph.pb' is truncated or corrupt: its end mark is missing")


def test_repeated_node_name(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].nodes[1].name = graph.variants[0].nodes[0].name
    _write_graph(module_dir, graph)
    _raises(module_dir, rf"graph.pb.*the node name {graph.variants[0].nodes[0].name!r} is empty or repeated")


def test_empty_node_name(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].nodes[0].name = ""
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*the node name '' is empty or repeated")


def test_control_input_that_is_not_an_earlier_node(module_dir):
    graph = _graph(module_dir)
    _node(graph, "x").control_inputs.append("scale")
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*node 'x' has the control input 'scale', which is not an earlier node")


# -- spec.py: signatures, assets, collections, variables, variants -----------------------------------
def test_signature_repeating_an_output_key(module_dir):
    graph = _graph(module_dir)
    outputs = graph.variants[0].signatures[0].outputs
    outputs.add().CopyFrom(outputs[0])
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*signature 'default' repeats 'default'")


def test_signature_naming_a_missing_tensor(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].signatures[0].outputs[0].tensor = "ghost:0"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"signature 'default': 'default' names the tensor 'ghost:0', which is not in the graph")


def test_signature_input_that_is_not_a_placeholder(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].signatures[0].inputs[0].tensor = "scale:0"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"signature 'default': input 'default' is not a float32 placeholder")


def test_signature_input_of_another_dtype(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].signatures[0].inputs[0].dtype = "int32"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"input 'default' is not a int32 placeholder")


def test_repeated_signature(module_dir):
    graph = _graph(module_dir)
    graph.variants[0].signatures.add().CopyFrom(graph.variants[0].signatures[0])
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*repeats the signature 'default'")


def test_collection_naming_a_missing_node(module_dir):
    graph = _graph(module_dir)
    coll = graph.variants[0].collections.add()
    coll.key = "losses"
    coll.items.add().tensor = "ghost:0"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*collection 'losses' names 'ghost:0', which is not in the graph")


def test_collection_variable_item_that_is_not_a_variable(module_dir):
    graph = _graph(module_dir)
    coll = graph.variants[0].collections.add()
    coll.key = "my_vars"
    coll.items.add().variable = "scale"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"collection 'my_vars' names 'scale', which is not in the graph")


def test_repeated_variable(module_dir):
    graph = _graph(module_dir)
    graph.variables.add().CopyFrom(graph.variables[0])
    _write_graph(module_dir, graph)
    _raises(module_dir, rf"graph.pb.*the variable name {graph.variables[0].name!r} is empty or repeated")


def test_variable_with_incomplete_shape(module_dir):
    graph = _graph(module_dir)
    var = next(v for v in graph.variables if v.name == "dense/kernel")
    var.shape.dims[0] = -1
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*variable 'dense/kernel' has the incomplete shape \[None, 2\]")


def test_variable_node_not_matching_the_variables(module_dir):
    graph = _graph(module_dir)
    var = next(v for v in graph.variables if v.name == "dense/kernel")
    var.dtype = "float64"
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*the Variable node 'dense/kernel' does not match the module's variables")


def test_two_variants_with_the_same_tags(module_dir):
    graph = _graph(module_dir)
    graph.variants.add().CopyFrom(graph.variants[0])
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*has two graph variants for the tags")


def test_no_variant(module_dir):
    graph = _graph(module_dir)
    del graph.variants[:]
    _write_graph(module_dir, graph)
    _raises(module_dir, r"graph.pb.*has no graph variant")


# -- safetensors_io.py -----------------------------------------------------------------------------
def _write_safetensors(path, header: object, data: bytes = b"") -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("header", [[], "text", 3])
def test_safetensors_header_that_is_not_an_object(module_dir, header):
    _write_safetensors(module_dir / "variables" / "variables.safetensors", header)
    _raises(module_dir, r"variables.safetensors' has a corrupt safetensors header: not a JSON object")


@pytest.mark.parametrize("entry", [
    {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": "two", "data_offsets": [0, 8]},
    {"dtype": "F32", "shape": [2]},
    {"dtype": "F32", "shape": [2], "data_offsets": [0]},
    "not a dict",
])
def test_safetensors_malformed_entry(module_dir, entry):
    _write_safetensors(module_dir / "variables" / "variables.safetensors", {"dense/bias": entry}, bytes(8))
    _raises(module_dir, r"variables.safetensors' has a malformed entry for 'dense/bias'")


def _shard(module_dir):
    """Rewrites the module's variables as two shards plus an index; returns the variables dir."""
    from hubkit.format.safetensors_io import map_tensors, read_store_index

    store = module_dir / "variables"
    values = {k: np.array(v) for k, v in map_tensors(str(store), read_store_index(str(store))).items()}
    (store / "variables.safetensors").unlink()
    files = write_store(str(store), values, max_shard_bytes=8)
    assert INDEX_FILE in files
    hk.Module(str(module_dir))  # the sharded store itself is intact
    return store


@pytest.mark.parametrize("bad", ["../variables.safetensors", ".hidden", "sub/dir.safetensors"])
def test_index_naming_an_invalid_file(module_dir, bad):
    store = _shard(module_dir)
    index = json.loads((store / INDEX_FILE).read_text())
    index["weight_map"]["dense/bias"] = bad
    (store / INDEX_FILE).write_text(json.dumps(index))
    _raises(module_dir, rf"Variables index .*{INDEX_FILE}' names the invalid file '{bad}'")


@pytest.mark.parametrize("text", ["not json", "[]", '{"metadata": {}}', '{"weight_map": [1, 2]}'])
def test_corrupt_index(module_dir, text):
    store = _shard(module_dir)
    (store / INDEX_FILE).write_text(text)
    _raises(module_dir, rf"Variables index .*{INDEX_FILE}' is corrupt")


def test_index_placing_a_tensor_in_another_shard(module_dir):
    store = _shard(module_dir)
    index = json.loads((store / INDEX_FILE).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(index["weight_map"]) == len(files) == 2
    moved = next(k for k, v in index["weight_map"].items() if v == files[0])
    index["weight_map"] = {k: files[1] if v == files[0] else files[0] for k, v in index["weight_map"].items()}
    (store / INDEX_FILE).write_text(json.dumps(index))
    _raises(module_dir, rf"Variables file .*{files[0]}' holds '{moved}', which the index places elsewhere")


def test_index_listing_a_tensor_no_shard_holds(module_dir):
    store = _shard(module_dir)
    index = json.loads((store / INDEX_FILE).read_text())
    index["weight_map"]["dense/phantom"] = next(iter(index["weight_map"].values()))
    (store / INDEX_FILE).write_text(json.dumps(index))
    _raises(module_dir, r"Variables index .* lists \['dense/phantom'\], which no shard holds")


# -- spec.py: the asset table ----------------------------------------------------------------------
@pytest.fixture
def asset_module_dir(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\nb\n")

    def module_fn():
        x = hk.placeholder(hk.string, [None], name="x")
        path = hk.add_asset(tmp_path / "vocab.txt")
        hk.add_signature(inputs=x, outputs=hk.identity(path))

    path = tmp_path / "asset_module"
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


def test_asset_table_entry_matching_no_node(asset_module_dir):
    graph = _graph(asset_module_dir)
    graph.variants[0].assets[0].node = "x"
    _write_graph(asset_module_dir, graph)
    _raises(asset_module_dir, r"graph.pb.*the asset table entry 'x' -> 'vocab.txt' matches no AssetPath node")


def test_asset_path_node_missing_from_the_table(asset_module_dir):
    graph = _graph(asset_module_dir)
    del graph.variants[0].assets[:]
    _write_graph(asset_module_dir, graph)
    _raises(asset_module_dir, r"graph.pb.*the AssetPath node '.*' is not in the asset table")
