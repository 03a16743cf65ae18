"""Real modules through the whole hub: export, publish (validated by loading), serve, Module(url), cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hubkit
from hubkit.cli import main
from hubkit.errors import RegistryError
from tests.hub.helpers import REPO, needs_module_layer

pytestmark = needs_module_layer


def _module_fn():
    x = hubkit.placeholder(hubkit.float32, [None, 3])
    w = hubkit.get_variable("dense/kernel", [3, 2], initializer=hubkit.initializers.get("glorot_uniform"))
    y = hubkit.matmul(x, w)
    hubkit.add_signature(inputs=x, outputs=y)
    hubkit.add_signature("double", inputs={"x": x}, outputs={"y": y * 2.0})


@pytest.fixture
def real_module(tmp_path):
    path = str(tmp_path / "exported")
    hubkit.Module(hubkit.create_module_spec(_module_fn)).export(path)
    return path


@pytest.fixture
def real_registry(real_module, tmp_path, server_factory):
    root = str(tmp_path / "registry")
    hubkit.publish(real_module, root, name="acme/tiny", description="A tiny linear module.")
    return server_factory(root)


def test_publish_describes_signatures_from_the_loaded_module(real_module, tmp_path):
    manifest = hubkit.publish(real_module, str(tmp_path / "reg"), name="acme/tiny")
    (variant,) = manifest["variants"]
    assert variant["tags"] == []
    assert variant["signatures"]["default"] == {
        "inputs": {"default": {"dtype": "float32", "shape": [None, 3]}},
        "outputs": {"default": {"dtype": "float32", "shape": [None, 2]}},
    }
    assert variant["signatures"]["double"]["inputs"] == {"x": {"dtype": "float32", "shape": [None, 3]}}
    with open(tmp_path / "reg" / "index.html") as f:
        page = f.read()
    assert "double" in page and "acme/tiny" in page


def test_publish_refuses_a_module_that_does_not_load(real_module, tmp_path):
    with open(os.path.join(real_module, "graph.pb"), "wb") as f:
        f.write(b"\xff\x00 not a graph")
    with pytest.raises(RegistryError, match="does not load, so it cannot be published"):
        hubkit.publish(real_module, str(tmp_path / "reg"), name="acme/tiny")
    assert not os.path.exists(tmp_path / "reg" / "acme" / "tiny" / "1.tar.gz")


def test_module_by_url_matches_module_by_path(hub_env, real_module, real_registry):
    url = hubkit.registry_latest(f"{real_registry.url}/acme/tiny")
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    expected = hubkit.Module(real_module)(x)
    np.testing.assert_allclose(hubkit.Module(url)(x), expected, rtol=1e-6)
    requests_after_first = len(real_registry.requests)
    again = hubkit.Module(url)  # from the cache: no request
    np.testing.assert_allclose(again(x, signature="double", as_dict=True)["y"], 2 * expected, rtol=1e-6)
    assert len(real_registry.requests) == requests_after_first
    spec = hubkit.load_module_spec(url)
    assert sorted(spec.get_signature_names()) == ["default", "double"]


def test_offline_cached_module_loads(hub_env, real_registry, monkeypatch):
    url = f"{real_registry.url}/acme/tiny/1"
    hubkit.Module(url)
    monkeypatch.setenv("HUBKIT_OFFLINE", "1")
    real_registry.close()  # nothing is listening any more
    assert hubkit.Module(url)(np.ones((1, 3), np.float32)).shape == (1, 2)


def test_cli_info_on_a_real_module(hub_env, real_registry, capsys):
    assert main(["info", f"{real_registry.url}/acme/tiny/1"]) == 0
    out = capsys.readouterr().out
    assert "signature 'double'" in out and "input  x: float32 [None, 3]" in out
    assert "dense/kernel" in out and "[3, 2]" in out


_LOAD_AND_RUN = """
import sys
import numpy as np
import hubkit
m = hubkit.Module(sys.argv[1])
print(m(np.arange(6, dtype=np.float32).reshape(2, 3)).tobytes().hex())
"""


@pytest.mark.slow
def test_eight_processes_load_identical_modules_after_one_download(hub_env, real_registry):
    real_registry.drip = 0.002
    url = f"{real_registry.url}/acme/tiny/1"
    processes = [subprocess.Popen([sys.executable, "-c", _LOAD_AND_RUN, url], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    assert len(set(outputs)) == 1 and outputs[0]
    assert real_registry.count("/acme/tiny/1.tar.gz") == 1


def test_publish_script(real_module, tmp_path):
    root = str(tmp_path / "reg")
    result = subprocess.run([sys.executable, "scripts/publish.py", real_module, root, "--name", "acme/tiny",
                             "--description", "From the script."], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(root, "acme", "tiny", "1.json")) as f:
        assert json.load(f)["description"] == "From the script."
