"""resolver_test / compressed_module_resolver_test behaviours (the ones not about TF Hub's private protocols)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk


def _module_fn():
    x = hk.placeholder(hk.float32, [None])
    hk.add_signature(inputs=x, outputs=x + 1.0)


@pytest.fixture
def served(hub_env, tmp_path, server_factory):
    path = str(tmp_path / "export")
    hk.Module(hk.create_module_spec(_module_fn)).export(path)
    root = str(tmp_path / "registry")
    hk.publish(path, root, name="acme/plus-one")
    return server_factory(root)


def test_local_directory_handles_resolve_to_themselves(tmp_path):
    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(_module_fn)).export(path)
    assert os.path.samefile(hk.resolve(path), path)
    assert os.path.samefile(hk.resolve("file://" + path), path)
    with pytest.raises(hk.HubkitError, match="does-not-exist"):
        hk.resolve(str(tmp_path / "does-not-exist"))


def test_module_already_downloaded_makes_no_request(served):
    url = f"{served.url}/acme/plus-one/1"
    first = hk.resolve(url)
    count = len(served.requests)
    assert hk.resolve(url) == first and len(served.requests) == count
    np.testing.assert_array_equal(hk.Module(url)([1.0]), [2.0])


def test_missing_and_corrupted_archives_are_errors_leaving_nothing(served, hub_env):
    with pytest.raises(hk.DownloadError):
        hk.resolve(f"{served.url}/acme/plus-one/7")
    served.faults["/acme/plus-one/1.tar.gz"] = ["wrong"] * 5
    with pytest.raises(hk.HubkitError):
        hk.resolve(f"{served.url}/acme/plus-one/1")
    leftovers = [d for d in os.listdir(hub_env.cache_dir) if not d.startswith(".")] if os.path.isdir(
        hub_env.cache_dir) else []
    for entry in leftovers:
        assert not os.path.isdir(os.path.join(hub_env.cache_dir, entry, "variables")), entry
