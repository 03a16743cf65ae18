"""A cached module damaged after install: loading it fails with a FormatError that ends with the repair command,
and that command works."""

from __future__ import annotations

import os

import pytest

import hubkit
from hubkit.cli import main


def _module_fn():
    x = hubkit.placeholder(hubkit.float32, [None, 3], name="x")
    hubkit.add_signature(inputs=x, outputs=hubkit.layers.dense(x, 2, name="dense"))


@pytest.fixture
def served_module(tmp_path, server_factory):
    hubkit.Module(hubkit.create_module_spec(_module_fn)).export(str(tmp_path / "module"))
    hubkit.publish(str(tmp_path / "module"), str(tmp_path / "registry"), name="acme/tiny")
    return f"{server_factory(str(tmp_path / 'registry')).url}/acme/tiny/1"


@pytest.mark.parametrize("damage", ["graph", "variables"])
def test_damaged_cache_entry_names_the_command_that_repairs_it(hub_env, served_module, damage, capsys):
    directory = hubkit.resolve(served_module)
    target = os.path.join(directory, "graph.pb") if damage == "graph" else os.path.join(
        directory, "variables", "variables.safetensors")
    with open(target, "r+b") as f:  # same size: a cache hit still finds the entry complete
        f.seek(3)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(hubkit.FormatError) as info:
        hubkit.Module(served_module)
    message = str(info.value)
    assert message.endswith("`hubkit cache prune --verify` removes every damaged entry; the next load downloads it "
                            "again.")
    assert f"`hubkit cache rm {served_module}` removes it" in message
    assert main(["info", served_module]) == 1
    assert "`hubkit cache rm " in capsys.readouterr().err
    assert main(["cache", "rm", served_module]) == 0
    assert hubkit.Module(served_module)([[1.0, 2.0, 3.0]]).shape == (1, 2)


def test_a_broken_module_outside_the_cache_gets_no_cache_advice(hub_env, tmp_path):
    hubkit.Module(hubkit.create_module_spec(_module_fn)).export(str(tmp_path / "module"))
    with open(tmp_path / "module" / "graph.pb", "r+b") as f:
        f.write(b"\xff\xff")
    with pytest.raises(hubkit.FormatError) as info:
        hubkit.Module(str(tmp_path / "module"))
    assert "hubkit cache" not in str(info.value)
