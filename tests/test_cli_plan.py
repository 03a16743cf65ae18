"""``hubkit info HANDLE --plan``: the optimised plan of a module's signatures, with sizes at a batch."""

import numpy as np
import pytest

import hubkit as hk
from hubkit.cli import main


@pytest.fixture
def mlp_dir(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        h = hk.layers.dense(x, 4, activation="relu", name="hidden")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(h, 2, name="out"))
        hk.add_signature("doubled", inputs=x, outputs=x * 2.0 + 1.0)

    path = str(tmp_path / "mlp")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


def test_plan_of_every_signature_with_sizes(mlp_dir, capsys):
    assert main(["info", mlp_dir, "--plan", "--batch", "5"]) == 0
    out = capsys.readouterr().out
    assert "signature 'default': inputs ['x:0'] -> outputs ['out/BiasAdd:0']" in out
    assert "0  MatMul+BiasAdd+Relu  (x:0, hidden/kernel:0, hidden/bias:0) -> hidden/Relu:0" in out
    assert "GEMM into a fresh array, then bias + Relu on it in place (one pass)" in out
    assert "batch 5: writes float32 (5, 4), 80 B" in out
    assert "batch 5: intermediates peak at 80 B (outputs 40 B)" in out
    assert "signature 'doubled'" in out


def test_one_signature_and_errors(mlp_dir, capsys):
    assert main(["info", mlp_dir, "--plan", "--signature", "doubled"]) == 0
    out = capsys.readouterr().out
    assert "signature 'default'" not in out and "signature 'doubled'" in out and "batch" not in out
    assert main(["info", mlp_dir, "--plan", "--signature", "nope"]) == 1
    assert "available signatures: ['default', 'doubled']" in capsys.readouterr().err
    assert main(["info", mlp_dir, "--plan", "--tags", "train"]) == 1
    assert "train" in capsys.readouterr().err
    assert main(["info", mlp_dir, "--plan", "--batch", "0"]) == 1
    assert "--batch must be at least 1" in capsys.readouterr().err
    assert main(["info", mlp_dir, "--batch", "3"]) == 1
    assert "go with --plan" in capsys.readouterr().err


def test_plan_matches_the_module_call(mlp_dir, capsys):
    """The plan printed is the one a call runs: same step count as the module's cached plan."""
    m = hk.Module(mlp_dir)
    m(np.zeros((2, 3), np.float32))
    plan = m._plans[("default", False)][0]
    assert main(["info", mlp_dir, "--plan", "--signature", "default"]) == 0
    out = capsys.readouterr().out
    assert f"{len(plan.steps)} steps" in out
