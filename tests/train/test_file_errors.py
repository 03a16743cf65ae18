"""Checkpoint and exporter inputs that used to slip through or escape as bare OS errors."""

import numpy as np
import pytest

import hubkit as hk


def test_checkpoint_under_a_file_is_a_checkpoint_error(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a directory")
    ckpt = hk.Checkpoint(v=hk.Variable(np.zeros(2, np.float32), name="v"))
    with pytest.raises(hk.CheckpointError, match="Cannot write checkpoint"):
        ckpt.write(str(tmp_path / "blocker" / "sub" / "ckpt"))


@pytest.mark.parametrize("name", ["m\n", "a/b", "", "x y"])
def test_exporter_names_must_be_one_plain_path_part(name):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2])
        hk.add_signature(inputs=x, outputs=x * 2.0)

    with pytest.raises(hk.HubkitError, match="name"):
        hk.LatestModuleExporter(name, module_fn)
