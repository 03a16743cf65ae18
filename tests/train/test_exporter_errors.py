"""LatestModuleExporter refuses bad names and counts, and values that do not fit the module."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L


def module_fn():
    x = hk.placeholder(hk.float32, [None, 3], name="x")
    hk.add_signature(inputs=x, outputs=L.Dense(2, name="dense")(x))


def checkpoint_of(tmp_path, **variables: np.ndarray) -> str:
    named = {k: hk.Variable(v, name=k.replace("__", "/")) for k, v in variables.items()}
    return hk.Checkpoint(**named).write(str(tmp_path / "ck"))


@pytest.mark.parametrize("name", ["", "a/b", "../up", "with space", "tab\t", "é"])
def test_a_name_that_is_not_a_plain_directory_name_is_refused(name):
    with pytest.raises(hk.CheckpointError, match=r"must use letters, digits, '_', '.' and '-'"):
        hk.LatestModuleExporter(name, module_fn)


@pytest.mark.parametrize("count", [0, -1])
def test_exports_to_keep_below_one_is_refused(count):
    with pytest.raises(hk.CheckpointError, match=rf"exports_to_keep must be positive or None, got {count}\."):
        hk.LatestModuleExporter("ok", module_fn, exports_to_keep=count)


def test_good_names_and_counts_are_accepted():
    for name in ["m", "my-module_1.2"]:
        assert hk.LatestModuleExporter(name, module_fn, exports_to_keep=None).name == name


def test_a_saved_value_of_another_shape_names_the_key_and_both_shapes(tmp_path):
    path = checkpoint_of(
        tmp_path, dense__kernel=np.zeros((4, 2), np.float32), dense__bias=np.zeros(2, np.float32)
    )
    with pytest.raises(
        hk.CheckpointError,
        match=r"value 'dense__kernel/.ATTRIBUTES/VARIABLE_VALUE' has shape \[4, 2\], but module variable "
        r"'dense/kernel' has shape \[3, 2\]",
    ):
        hk.LatestModuleExporter("m", module_fn).export(path, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")  # nothing is exported


def test_a_variable_map_to_a_value_of_another_shape_is_refused(tmp_path):
    path = checkpoint_of(tmp_path, k=np.zeros((3, 2), np.float32), b=np.zeros(5, np.float32))
    mapping = {"dense/kernel": "k", "dense/bias": "b"}
    with pytest.raises(
        hk.CheckpointError, match=r"has shape \[5\], but module variable 'dense/bias' has shape \[2\]"
    ):
        hk.LatestModuleExporter("m", module_fn, variable_map=mapping).export(path, str(tmp_path / "out"))
    with pytest.raises(
        hk.CheckpointError, match=r"has shape \[5\], but module variable 'dense/bias' has shape \[2\]"
    ):
        hk.LatestModuleExporter("m", module_fn, variable_map=mapping.get).export(path, str(tmp_path / "out"))


def test_exporting_from_a_directory_without_checkpoints_is_refused(tmp_path):
    with pytest.raises(hk.CheckpointError, match="holds no checkpoint"):
        hk.LatestModuleExporter("m", module_fn).export(str(tmp_path), str(tmp_path / "out"))
