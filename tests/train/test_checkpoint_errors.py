"""Every way a checkpoint can be asked for badly, or found broken, ends in a CheckpointError saying what."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import checkpoint_io

V = "/.ATTRIBUTES/VARIABLE_VALUE"


def write_index(prefix: str, index: object) -> None:
    with open(prefix + ".index", "w") as f:
        json.dump(index, f)


def saved(tmp_path) -> str:
    return hk.Checkpoint(v=hk.Variable(np.arange(4, dtype=np.float32), name="w")).write(str(tmp_path / "ck"))


def edited_index(prefix: str, **entry_changes: object) -> None:
    with open(prefix + ".index") as f:
        index = json.load(f)
    index["entries"]["v" + V].update(entry_changes)
    write_index(prefix, index)


# -- arguments --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [None, 3, 1.5, "model", b"x"])
def test_a_dependency_that_holds_no_variables_is_refused(bad):
    with pytest.raises(
        hk.CheckpointError, match=r"dependency 'model' must be a layer, model, optimizer or variable, got"
    ):
        hk.Checkpoint(model=bad)


@pytest.mark.parametrize("bad", [0, -2])
def test_manager_refuses_a_max_to_keep_below_one(tmp_path, bad):
    ckpt = hk.Checkpoint(v=hk.Variable([1.0]))
    with pytest.raises(
        hk.CheckpointError, match=rf"max_to_keep must be a positive number or None, got {bad}"
    ):
        hk.CheckpointManager(ckpt, str(tmp_path), max_to_keep=bad)
    assert os.listdir(tmp_path) == []


def test_restoring_from_none_cannot_be_asserted(tmp_path):
    status = hk.Checkpoint(v=hk.Variable([1.0])).restore(None)
    assert status.path is None
    status.expect_partial()  # accepted: nothing is checked
    with pytest.raises(hk.CheckpointError, match="Nothing was restored: the checkpoint path was None"):
        status.assert_consumed()
    with pytest.raises(hk.CheckpointError, match="Nothing was restored: the checkpoint path was None"):
        status.assert_existing_objects_matched()


def test_a_dependency_named_save_counter_collides_with_the_save_counter(tmp_path):
    ckpt = hk.Checkpoint(save_counter=hk.Variable(np.int64(7)))
    with pytest.raises(hk.CheckpointError, match=r"key 'save_counter" + V + "' would be written twice"):
        ckpt.save(str(tmp_path / "ck"))
    assert not any(name.endswith(".index") for name in os.listdir(tmp_path))


# -- missing checkpoints ----------------------------------------------------------------------------
def test_a_directory_without_checkpoints_says_so(tmp_path):
    with pytest.raises(hk.CheckpointError, match=r"Directory '.*' holds no checkpoint"):
        hk.train.load_checkpoint(str(tmp_path))
    with pytest.raises(hk.CheckpointError, match="holds no checkpoint"):
        hk.Checkpoint(v=hk.Variable([1.0])).restore(str(tmp_path))


def test_a_missing_prefix_names_the_index_file(tmp_path):
    with pytest.raises(
        hk.CheckpointError, match=r"No checkpoint at '.*nothing': '.*nothing.index' does not exist"
    ):
        hk.train.list_variables(str(tmp_path / "nothing"))


def test_a_missing_data_shard_is_reported_when_its_value_is_read(tmp_path):
    prefix = saved(tmp_path)
    os.unlink(prefix + ".data-00000-of-00001")
    reader = hk.train.load_checkpoint(prefix)  # the index alone is fine
    with pytest.raises(
        hk.CheckpointError, match=r"Cannot read 'v" + V + r"' from checkpoint shard '.*data-00000-of-00001'"
    ):
        reader.get_tensor("v" + V)
    with pytest.raises(hk.CheckpointError, match="from checkpoint shard"):
        hk.Checkpoint(v=hk.Variable(np.zeros(4, np.float32))).restore(prefix)


# -- corrupt index ----------------------------------------------------------------------------------
@pytest.mark.parametrize("index", [[1, 2], {"format": "other"}, {"version": 1}, "hubkit-checkpoint"])
def test_an_index_of_another_format_is_refused(tmp_path, index):
    prefix = str(tmp_path / "ck")
    write_index(prefix, index)
    with pytest.raises(hk.CheckpointError, match=r"'.*ck.index' is not a hubkit checkpoint index"):
        hk.train.load_checkpoint(prefix)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"shard": 5}, "shard, offset or size out of range"),
        ({"offset": -1}, "shard, offset or size out of range"),
        ({"nbytes": 12}, "shard, offset or size out of range"),
        ({"dtype": "complex512"}, "Unsupported dtype 'complex512'"),
        ({"shape": "four"}, "invalid literal for int"),
        ({"shape": None}, "'NoneType' object is not iterable"),
    ],
)
def test_a_corrupt_numeric_entry_is_named_when_the_index_is_read(tmp_path, changes, detail):
    prefix = saved(tmp_path)
    edited_index(prefix, **changes)
    with pytest.raises(hk.CheckpointError, match=r"has a corrupt entry 'v" + V + "': " + detail):
        hk.train.load_checkpoint(prefix)


@pytest.mark.parametrize("missing", ["dtype", "shape", "shard", "offset", "nbytes"])
def test_an_entry_missing_a_field_is_corrupt(tmp_path, missing):
    prefix = saved(tmp_path)
    with open(prefix + ".index") as f:
        index = json.load(f)
    del index["entries"]["v" + V][missing]
    write_index(prefix, index)
    with pytest.raises(hk.CheckpointError, match=rf"corrupt entry 'v{V}': '{missing}'"):
        hk.train.load_checkpoint(prefix)


def test_a_string_entry_with_the_wrong_number_of_strings_is_corrupt(tmp_path):
    prefix = str(tmp_path / "ck")  # string values come from module tables, not variables
    checkpoint_io.write_checkpoint(prefix, [("v" + V, np.array(["a", "b", "c"], dtype=object), None)])
    edited_index(prefix, strings=["a", "b"])
    with pytest.raises(hk.CheckpointError, match=r"corrupt entry 'v" + V + "': wrong number of strings"):
        hk.train.load_checkpoint(prefix)


# -- unwritable files -------------------------------------------------------------------------------
def test_an_unwritable_index_is_a_checkpoint_error_and_leaves_no_temporary_file(tmp_path):
    os.mkdir(tmp_path / "ck.index")  # a directory where the index should go
    with pytest.raises(hk.CheckpointError, match=r"Cannot write checkpoint '.*ck': "):
        hk.Checkpoint(v=hk.Variable([1.0])).write(str(tmp_path / "ck"))
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


# -- the directory's state file ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"{not json", "is corrupt: "),
        (b"\xff\xfe", "is corrupt: "),
        (b"[1, 2]", "is corrupt: expected a JSON object"),
    ],
)
def test_a_corrupt_state_file_is_reported_by_every_reader(tmp_path, content, detail):
    (tmp_path / "checkpoint").write_bytes(content)
    pattern = r"Checkpoint state file '.*checkpoint' " + detail
    with pytest.raises(hk.CheckpointError, match=pattern):
        hk.train.latest_checkpoint(str(tmp_path))
    with pytest.raises(hk.CheckpointError, match=pattern):
        hk.CheckpointManager(hk.Checkpoint(v=hk.Variable([1.0])), str(tmp_path))
    with pytest.raises(hk.CheckpointError, match=pattern):
        hk.Checkpoint(v=hk.Variable([1.0])).save(str(tmp_path / "ck"))
