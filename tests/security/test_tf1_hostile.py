"""Hostile TF1 SavedModels: every one ends in a FormatError naming the problem, before large allocations."""

from __future__ import annotations

import os
import shutil

import pytest

import hubkit as hk
from hubkit.errors import FormatError
from hubkit.importers.tf1.functions import _messages
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "data", "tf1", "two_signatures")


@pytest.fixture
def module(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    d = str(tmp_path / "m")
    shutil.copytree(FIXTURE, d)
    path = os.path.join(d, "saved_model.pb")
    with open(path, "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())

    def save() -> str:
        with open(path, "wb") as f:
            f.write(sm.SerializeToString())
        return d
    return sm, save


def _node(sm, name):
    return next(n for n in sm.meta_graphs[0].graph_def.node if n.name == name)


def _shape(t, dims):
    for x in dims:
        t.tensor_shape.dim.add(size=x)


@pytest.mark.parametrize("label, dtype, dims, field, value, match", [
    ("product wraps to 0", 1, [2**32, 2**32], None, None, "elements, more than the limit"),
    ("product wraps negative", 1, [2**62, 2], "float_val", 1.0, "elements, more than the limit"),
    ("half beyond 16 bits", 19, [], "half_val", 70000, "outside the range of float16"),
    ("int8 1000", 6, [], "int_val", 1000, "outside the range of int8"),
    ("uint8 -1", 4, [], "int_val", -1, "outside the range of uint8"),
    ("int16 overflow", 5, [3], "int_val", 1 << 20, "outside the range of int16"),
])
def test_constant_values_are_checked(module, label, dtype, dims, field, value, match):
    sm, save = module
    t = _node(sm, "mul_1/y").attr["value"].tensor
    t.Clear()
    t.dtype = dtype
    _shape(t, dims)
    if field:
        getattr(t, field).append(value)
    with pytest.raises(FormatError, match=match):
        hk.load_module_spec(save())


@pytest.mark.parametrize("op", ["Identity", "SegmentSum", "AssignSub", "TensorArrayV3", "TensorListReserve",
                                "LookupTableSizeV2", "LookupTableFindV2", "While", "If"])
def test_missing_inputs_are_named(module, op):
    sm, save = module
    nd = sm.meta_graphs[0].graph_def.node.add(name="fz", op=op)
    for k in ("T", "dtype", "element_dtype"):
        nd.attr[k].type = 1
    sm.meta_graphs[0].signature_def["combine_scaled"].outputs["sum"].name = "fz:0"
    with pytest.raises(FormatError, match="'fz'"):
        hk.load_module_spec(save())


def _big(t, n=1 << 24):
    t.dtype = 1
    _shape(t, [n])
    t.float_val.append(1.0)  # a few bytes; 64 MiB decoded


@pytest.mark.parametrize("where", ["attr", "list", "default", "variants"])
def test_attribute_tensors_share_one_budget(module, where):
    sm, save = module
    mg = sm.meta_graphs[0]
    if where == "default":  # an op default applies to every node of the op
        op = mg.meta_info_def.stripped_op_list.op.add(name="JunkOp")
        a = op.attr.add(name="payload", type="tensor")
        _big(a.default_value.tensor)
    for i in range(40):
        nd = mg.graph_def.node.add(name=f"junk{i}", op="JunkOp" if where == "default" else "NoOp")
        if where == "attr":
            _big(nd.attr["payload"].tensor)
        elif where == "list":
            _big(nd.attr["payload"].list.tensor.add())
    if where == "variants":
        for i in range(6):
            extra = sm.meta_graphs.add()
            extra.CopyFrom(mg)
            extra.meta_info_def.tags[:] = [f"t{i}"]
            _big(extra.graph_def.node.add(name="big", op="Const").attr["value"].tensor)
    with pytest.raises(FormatError, match="decode to more than"):
        hk.load_module_spec(save())


def _library(sm, depth, width, chain=False):
    _, view_cls = _messages()
    lib = view_cls()

    def call(nd, name, inp, fname):
        nd.name, nd.op = name, "PartitionedCall"
        nd.input.append(inp)
        nd.attr["Tin"].list.type.append(1)
        nd.attr["Tout"].list.type.append(1)
        nd.attr["f"].func.name = fname

    for k in range(depth + 1):
        f = lib.library.function.add()
        f.signature.name = f"f{k}"
        f.signature.input_arg.add(name="a", type=1)
        f.signature.output_arg.add(name="out", type=1)
        if k == 0:
            nd = f.node_def.add(name="id", op="Identity", input=["a"])
            nd.attr["T"].type = 1
            f.ret["out"] = "id:output:0"
            continue
        for w in range(1, width + 1):
            call(f.node_def.add(), f"c{w}", "a", "f0" if chain and w > 1 else f"f{k - 1}")
        nd = f.node_def.add(name="add", op="AddN", input=[f"c{w}:output:0" for w in range(1, width + 1)])
        nd.attr["T"].type = 1
        nd.attr["N"].i = width
        f.ret["out"] = "add:z:0"
    mg = sm.meta_graphs[0]
    call(mg.graph_def.node.add(), "call", "a", f"f{depth}")
    mg.signature_def["combine_scaled"].outputs["sum"].name = "call:0"
    mg.graph_def.MergeFromString(lib.SerializeToString())


@pytest.mark.parametrize("depth, width", [(4, 8), (7, 3), (3, 40)])
def test_function_fan_out_is_bounded(module, depth, width):
    sm, save = module
    _library(sm, depth, width)
    with pytest.raises(FormatError, match="expand to more than"):
        hk.load_module_spec(save())


@pytest.mark.parametrize("depth", [8, 20, 40])
def test_function_nesting_is_bounded(module, depth):
    sm, save = module
    _library(sm, depth, 1, chain=True)
    with pytest.raises(FormatError, match="nested more than"):
        hk.load_module_spec(save())


def test_nested_functions_within_limits_load(module):
    sm, save = module
    _library(sm, 3, 2)
    spec = hk.load_module_spec(save())
    assert spec is not None


# -- variables.index and bundle entries ----------------------------------------------------------------------------
def test_index_value_size_is_capped(tmp_path):
    from hubkit.importers.tf1.table import MAX_VALUE_BYTES, read_table
    from hubkit.importers.tf1.writer import write_table

    path = str(tmp_path / "variables.index")
    write_table(path, [(b"a", b"x"), (b"b", b"\0" * (MAX_VALUE_BYTES + 1))], compress=True, block_bytes=1 << 22)
    with pytest.raises(FormatError, match="holds more than"):
        read_table(path)


@pytest.mark.parametrize("compress", [False, True])
def test_index_total_decoded_is_capped(tmp_path, monkeypatch, compress):
    from hubkit.importers.tf1 import table
    from hubkit.importers.tf1.writer import write_table

    monkeypatch.setattr(table, "MAX_DECODED_BASE", 1 << 16)  # the same check at a scale a test can reach
    monkeypatch.setattr(table, "DECODED_PER_FILE_BYTE", 0)
    path = str(tmp_path / "variables.index")
    write_table(path, [(b"k%05d" % i, b"\0" * 1000) for i in range(200)], compress=compress)
    with pytest.raises(FormatError, match="decode to more than"):
        table.read_table(path)


@pytest.mark.parametrize("shape", [(2**32, 2**32), (2**62, 4), (2**63, 2**63, 2)])
def test_bundle_shapes_never_wrap(shape):
    from hubkit.importers.tf1.bundle import BundleEntry, _check_size, _decode_strings

    with pytest.raises(FormatError, match="needs"):
        _check_size(BundleEntry("w", 1, shape, "f", 0, 0, 0), "entry 'w'")
    with pytest.raises(FormatError, match="more than the limit"):
        _decode_strings(b"", BundleEntry("s", 7, shape, "f", 0, 0, 0), "shard")


@pytest.mark.parametrize("varint", [b"\xff" * 9 + b"\x7f", b"\xff" * 10 + b"\x01", b"\x80" * 12])
def test_bundle_string_lengths_beyond_64_bits(varint):
    from hubkit.importers.tf1.bundle import BundleEntry, _decode_strings

    with pytest.raises(FormatError, match=r"64 bits|truncated or corrupt"):
        _decode_strings(varint + b"\0" * 8, BundleEntry("s", 7, (1,), "f", 0, 0, 0), "shard")


def test_sliced_bundle_entry_holding_bytes_is_refused(tmp_path, monkeypatch):
    from hubkit.importers.tf1.table import read_table
    from hubkit.importers.tf1.writer import write_table

    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    d = str(tmp_path / "m")
    shutil.copytree(os.path.join(os.path.dirname(FIXTURE), "partitioned_embedding"), d)
    index = os.path.join(d, "variables", "variables.index")
    items, changed = [], 0
    for key, value in read_table(index):
        if key:
            entry = tfpb.BundleEntryProto.FromString(value)
            if entry.slices:
                entry.size, changed = 4, changed + 1
                value = entry.SerializeToString()
        items.append((key, value))
    assert changed
    write_table(index, items)
    with pytest.raises(FormatError, match="lists slices but also holds 4 bytes"):
        hk.load_module_spec(d)
