"""convert -> publish -> serve on 127.0.0.1 -> load by URL; and a TF1 archive loaded straight from a URL."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pytest

import hubkit as hk
from tests.importers.tf1.conftest import FIXTURES, as_feed, fixture_path, recorded


def _first_call(name: str):
    rec = recorded(name)
    for key in rec:
        if key.startswith("in__"):
            _, sig, _ = key.split("__", 2)
            head = f"in__{sig}__"
            return sig, {k[len(head):]: as_feed(v) for k, v in rec.items() if k.startswith(head)}
    raise AssertionError(name)


@pytest.mark.parametrize("name", FIXTURES)
def test_converted_module_computes_the_same(name, tmp_path):
    dst = hk.convert(fixture_path(name), str(tmp_path / "converted"))
    assert os.path.isfile(os.path.join(dst, "hubkit_module.pb"))
    original, converted = hk.load_module_spec(fixture_path(name)), hk.load_module_spec(dst)
    assert converted.get_tags() == original.get_tags()
    for tags in original.get_tags():
        assert converted.get_signature_names(tags) == original.get_signature_names(tags)
        a, b = hk.Module(original, tags=tags), hk.Module(converted, tags=tags)
        sig, inputs = _first_call(name)
        if sig not in a.get_signature_names():
            continue
        out_a, out_b = a(inputs, signature=sig, as_dict=True), b(inputs, signature=sig, as_dict=True)
        assert sorted(out_a) == sorted(out_b)
        for key in out_a:
            if out_a[key].dtype == object:
                assert list(out_a[key]) == list(out_b[key])
            else:
                np.testing.assert_array_equal(out_a[key], out_b[key])


def test_converted_module_keeps_slash_keys_and_attachment(tmp_path):
    dst = hk.convert(fixture_path("mobilenet_block"), str(tmp_path / "mobile"))
    spec = hk.load_module_spec(dst)
    assert "MobilenetV2/layer_7/output" in spec.get_output_info_dict("image_feature_vector")
    from hubkit.module.image_module_info_pb2 import ImageModuleInfo

    assert spec.get_attached_message("image_module_info", ImageModuleInfo).default_image_size.width == 9


def test_convert_publish_serve_and_load_by_url(hub_env, tmp_path, server_factory):
    dst = hk.convert(fixture_path("text_embedding"), str(tmp_path / "converted"))
    root = str(tmp_path / "registry")
    hk.publish(dst, root, name="acme/tf1-text")
    server = server_factory(root)
    url = f"{server.url}/acme/tf1-text/1"
    sentences = as_feed(recorded("text_embedding")["in__default__sentences"])
    expected = recorded("text_embedding")["out__default__default"]
    np.testing.assert_allclose(hk.Module(url)(sentences), expected, rtol=1e-5, atol=1e-6)


def test_tf1_archive_loads_from_a_url(hub_env, tmp_path, server_factory):
    root = tmp_path / "site"
    root.mkdir()
    with tarfile.open(root / "text.tar.gz", "w:gz") as tar:
        for entry in sorted(os.listdir(fixture_path("text_embedding"))):
            tar.add(os.path.join(fixture_path("text_embedding"), entry), arcname=entry)
    server = server_factory(str(root))
    m = hk.Module(f"{server.url}/text.tar.gz")
    sentences = as_feed(recorded("text_embedding")["in__default__sentences"])
    np.testing.assert_allclose(m(sentences), recorded("text_embedding")["out__default__default"], rtol=1e-5,
                               atol=1e-6)


def test_tf1_archive_loads_from_a_local_path_and_a_file_url(hub_env, tmp_path):
    archive = tmp_path / "text.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for entry in sorted(os.listdir(fixture_path("text_embedding"))):
            tar.add(os.path.join(fixture_path("text_embedding"), entry), arcname=entry)
    sentences = as_feed(recorded("text_embedding")["in__default__sentences"])
    expected = recorded("text_embedding")["out__default__default"]
    for handle in (str(archive), archive.as_uri()):
        np.testing.assert_allclose(hk.Module(handle)(sentences), expected, rtol=1e-5, atol=1e-6)


def test_load_spec_is_the_importer_entry_point():
    from hubkit.importers import detect_format
    from hubkit.importers.tf1 import load_spec
    from hubkit.module.spec import ModuleSpec

    assert detect_format(fixture_path("bert_encoder")) == "tf1"
    spec = load_spec(fixture_path("bert_encoder"))
    assert isinstance(spec, ModuleSpec) and spec.get_signature_names() == ["tokens"]
    assert spec.module_dir == fixture_path("bert_encoder")
