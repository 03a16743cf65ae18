"""Hostile or broken TF1 modules fail at load with a FormatError naming the file and the problem."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import FormatError
from hubkit.importers.tf1.bundle import verify_bundle
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
from hubkit.importers.tf1.translate import supported_tf_ops


def _edit_saved_model(path: str, edit) -> None:
    file = os.path.join(path, "saved_model.pb")
    with open(file, "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    edit(sm)
    with open(file, "wb") as f:
        f.write(sm.SerializeToString())


def _node(sm, name):
    return next(n for n in sm.meta_graphs[0].graph_def.node if n.name == name)


def test_unsupported_ops_are_all_named_in_one_error(tf1_copy):
    path = tf1_copy("two_signatures")

    def edit(sm):
        relus = [n for n in sm.meta_graphs[0].graph_def.node if n.op == "Relu"]
        relus[0].op = "FancyActivation"
        _node(sm, next(n.name for n in sm.meta_graphs[0].graph_def.node if n.op == "Sigmoid")).op = "TensorArrayConcatV3"

    _edit_saved_model(path, edit)
    with pytest.raises(FormatError) as info:
        hk.load_module_spec(path)
    message = str(info.value)
    assert "'FancyActivation' (used by 'Relu')" in message and "'TensorArrayConcatV3' (used by 'Sigmoid')" in message
    assert "2 TF op type(s)" in message and f"hubkit translates {len(supported_tf_ops())} TF ops" in message
    assert "saved_model.pb" in message


def test_an_unsupported_op_outside_the_signatures_is_ignored(tf1_copy):
    path = tf1_copy("two_signatures")

    def edit(sm):
        init = next(n for n in sm.meta_graphs[0].graph_def.node if n.op == "RandomStandardNormal")
        init.op = "SomethingUnknown"  # an initializer: never imported

    _edit_saved_model(path, edit)
    assert hk.load_module_spec(path).get_signature_names() == ["combine_scaled", "default"]


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def test_corrupt_variable_data_fails_its_crc(tf1_copy):
    path = tf1_copy("two_signatures")
    shard = os.path.join(path, "variables", "variables.data-00000-of-00001")
    _flip(shard, 3)
    with pytest.raises(FormatError, match=r"variables\.data-00000-of-00001.*fails its CRC-32C check"):
        hk.load_module_spec(path)


def test_verify_bundle_reads_every_byte(tf1_copy):
    path = tf1_copy("text_embedding")
    verify_bundle(os.path.join(path, "variables"))
    shard = os.path.join(path, "variables", "variables.data-00000-of-00001")
    _flip(shard, os.path.getsize(shard) - 1)
    with pytest.raises(FormatError, match="fails its CRC-32C check"):
        verify_bundle(os.path.join(path, "variables"))


@pytest.mark.parametrize("damage", ["flip_block", "truncate", "magic", "empty", "missing_shard"])
def test_corrupt_index_is_refused(tf1_copy, damage):
    path = tf1_copy("cnn_batch_norm")
    index = os.path.join(path, "variables", "variables.index")
    size = os.path.getsize(index)
    if damage == "flip_block":
        _flip(index, 10)
    elif damage == "truncate":
        with open(index, "r+b") as f:
            f.truncate(size - 20)
    elif damage == "magic":
        _flip(index, size - 1)
    elif damage == "empty":
        open(index, "wb").close()
    else:
        os.remove(os.path.join(path, "variables", "variables.data-00000-of-00001"))
    with pytest.raises(FormatError, match="variables"):
        hk.load_module_spec(path)


def test_random_damage_to_the_index_never_escapes_as_another_error(tf1_copy):
    path = tf1_copy("bert_encoder")
    index = os.path.join(path, "variables", "variables.index")
    with open(index, "rb") as f:
        original = f.read()
    rng = np.random.default_rng(0)
    for _ in range(40):
        data = bytearray(original)
        for pos in rng.integers(0, len(data), size=3):
            data[pos] = int(rng.integers(0, 256))
        with open(index, "wb") as f:
            f.write(bytes(data))
        with contextlib.suppress(FormatError):
            hk.load_module_spec(path)


def test_marker_format_and_features_are_checked(tf1_copy):
    path = tf1_copy("two_signatures")
    marker = os.path.join(path, "tfhub_module.pb")
    with open(marker, "wb") as f:
        f.write(tfpb.ModuleDef(format=4).SerializeToString())
    with pytest.raises(FormatError, match=r"format 4; hubkit reads format 3"):
        hk.load_module_spec(path)
    with open(marker, "wb") as f:
        f.write(tfpb.ModuleDef(format=3, required_features=["time_travel"]).SerializeToString())
    with pytest.raises(FormatError, match="time_travel"):
        hk.load_module_spec(path)


def test_garbage_saved_model_is_refused(tf1_copy):
    path = tf1_copy("two_signatures")
    with open(os.path.join(path, "saved_model.pb"), "wb") as f:
        f.write(b"\xff\xff\xff garbage")
    with pytest.raises(FormatError, match=r"saved_model.pb"):
        hk.load_module_spec(path)


def test_vocabulary_with_a_repeated_key_fails_at_load(tf1_copy):
    path = tf1_copy("text_embedding")
    (vocab,) = os.listdir(os.path.join(path, "assets"))
    with open(os.path.join(path, "assets", vocab), "ab") as f:
        f.write(b"\nthe")
    with pytest.raises(FormatError, match=r"repeats the key 'the'"):
        hk.load_module_spec(path)


def test_asset_outside_assets_is_refused(tf1_copy):
    path = tf1_copy("text_embedding")

    def edit(sm):
        packed = sm.meta_graphs[0].collection_def["saved_model_assets"].any_list.value[0]
        asset = tfpb.AssetFileDef.FromString(packed.value)
        asset.filename = "../saved_model.pb"
        packed.value = asset.SerializeToString()

    _edit_saved_model(path, edit)
    with pytest.raises(FormatError, match=r"not a plain file name inside assets"):
        hk.load_module_spec(path)


def test_variable_missing_from_the_bundle(tf1_copy):
    path = tf1_copy("two_signatures")

    def edit(sm):
        for n in sm.meta_graphs[0].graph_def.node:
            if n.op == "VarHandleOp" and n.name == "dense/bias":
                n.attr["shared_name"].s = b"dense/other"

    _edit_saved_model(path, edit)
    with pytest.raises(FormatError, match=r"no value for the variable 'dense/bias'"):
        hk.load_module_spec(path)


def test_written_bundles_round_trip_with_prefix_keys_and_snappy_blocks(tmp_path):
    from hubkit.importers.tf1.bundle import read_bundle
    from hubkit.importers.tf1.writer import write_bundle

    tensors = {f"layer_{i:03d}/kernel": np.full((2, 3), i, np.float32) for i in range(60)}
    tensors["words"] = np.array(["a", "", "ünï"], dtype=object)
    for compress in (False, True):
        directory = str(tmp_path / f"v{compress}")
        write_bundle(directory, tensors, compress=compress)
        bundle = read_bundle(directory)
        assert sorted(bundle.entries) == sorted(tensors)
        assert bundle.read_strings(bundle.entries["words"]).tolist() == ["a", "", "ünï"]
        verify_bundle(directory)


def test_snappy_decoder_handles_copies_and_refuses_bad_blocks():
    from hubkit.importers.tf1.table import snappy_decompress

    # "abcabcabcX": literal "abc", copy-1 of length 6 at offset 3, literal "X"
    block = bytes([10, 2 << 2]) + b"abc" + bytes([((6 - 4) << 2) | 1, 3]) + bytes([0]) + b"X"
    assert snappy_decompress(block) == b"abcabcabcX"
    for bad in (bytes([10, 2 << 2]) + b"abc" + bytes([((6 - 4) << 2) | 1, 9]),  # offset past the output
                bytes([200, 200, 200, 200, 15]),  # announces more than the limit
                bytes([5, 2 << 2]) + b"abc"):  # shorter than announced
        with pytest.raises(ValueError):
            snappy_decompress(bad)


def test_attributes_left_out_take_the_stripped_op_list_defaults(tmp_path):
    import shutil

    from tests.importers.tf1.conftest import fixture_path, recorded

    images = recorded("cnn_batch_norm")["in__default__images"]
    expected = recorded("cnn_batch_norm")["out__default__default"]

    def strip(name, default_epsilon):
        path = str(tmp_path / name)
        shutil.copytree(fixture_path("cnn_batch_norm"), path)

        def edit(sm):
            mg = sm.meta_graphs[0]
            original = None
            for n in mg.graph_def.node:
                if n.op == "FusedBatchNormV3":
                    original = n.attr["epsilon"].f
                    del n.attr["epsilon"]
            op = next(o for o in mg.meta_info_def.stripped_op_list.op if o.name == "FusedBatchNormV3")
            attr = next(a for a in op.attr if a.name == "epsilon")
            attr.default_value.f = original if default_epsilon is None else default_epsilon

        _edit_saved_model(path, edit)
        return hk.Module(path)(images)

    np.testing.assert_allclose(strip("same", None), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(strip("other", 10.0), expected, rtol=1e-3)


def test_a_tiny_constant_declaring_a_huge_shape_is_refused(tf1_copy):
    path = tf1_copy("two_signatures")

    def edit(sm):
        const = next(n for n in sm.meta_graphs[0].graph_def.node if n.op == "Const")
        tensor = const.attr["value"].tensor
        tensor.Clear()
        tensor.dtype = 1
        for d in (1 << 20, 1 << 20):
            tensor.tensor_shape.dim.add(size=d)
        tensor.float_val.append(1.0)

    _edit_saved_model(path, edit)
    with pytest.raises(FormatError, match="more than the limit"):
        hk.load_module_spec(path)


def test_slice_keys_decode_ordered_code():
    from hubkit.importers.tf1.bundle import decode_slice_key

    # OrderedCode: 0, the name (0x00 escaped as 0x00 0xff, ended by 0x00 0x01), the rank, then signed
    # start/length per dimension (one byte 0x80 ^ v for -64 <= v < 64, longer ones with a length header).
    key = b"\x00" + b"emb\x00\xffx\x00\x01" + b"\x01\x02" + bytes([0x80, 0x84, 0xC0, 0x40, 0x3F, 0xBF])
    assert decode_slice_key(key) == ("emb\x00x", ((0, 4), (64, -65)))
    assert decode_slice_key(b"\x00w\x00\x01\x01\x01" + bytes([0x85, 0x7F])) == ("w", ((5, -1),))
    for bad in (b"\x01w\x00\x01\x00", b"\x00w", b"\x00w\x00\x01", b"\x00w\x00\x01\x01\x02\x80", b"\x00w\x00\x01\x00extra"):
        with pytest.raises(ValueError):
            decode_slice_key(bad)


def test_a_broken_tf1_loop_is_refused_at_load_naming_its_node(tf1_copy, capsys):
    """A Merge of a NextIteration and no Enter is no while loop hubkit can rebuild (real loops:
    test_control_flow_sparse.py)."""
    from hubkit.cli import main

    path = tf1_copy("two_signatures")

    def edit(sm):
        nodes = sm.meta_graphs[0].graph_def.node
        relu = next(n for n in nodes if n.op == "Relu")
        merge = nodes.add(name="while/Merge", op="Merge")
        nxt = nodes.add(name="while/NextIteration", op="NextIteration")
        merge.input.extend([relu.input[0], "while/NextIteration"])
        nxt.input.append("while/Merge")
        relu.input[0] = "while/Merge"

    _edit_saved_model(path, edit)
    with pytest.raises(FormatError) as info:
        hk.load_module_spec(path)
    message = str(info.value)
    assert "cycle through node 'while/Merge' (Merge) that is not a TF1 while loop" in message
    assert main(["info", path]) == 0
    assert "NextIteration: 1 node(s), supported: yes" in capsys.readouterr().out
