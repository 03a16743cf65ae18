"""Class 8: numbers and names from outside (module files, manifests, indexes, the environment, URLs)."""

from __future__ import annotations

import contextlib
import json
import os
import struct

import pytest

from hubkit import registry_latest, resolve
from hubkit.errors import DownloadError, FormatError, HubkitError, ResolveError
from hubkit.hub.handles import (
    is_registry_name_part,
    normalize_handle,
    redact_url,
    registry_parts,
    split_module_name,
)
from hubkit.hub.manifest_schema import manifest_problem
from tests.security.hostile import gz, manifest_for, refused_port, tar_bytes


@pytest.mark.parametrize("shape", [[2**32, 2**32], [2**62, 4], [-1, -1], [2**63], [1.5], ["3"], [True], [[1]]])
def test_safetensors_shape_products_never_wrap(tmp_path, shape):
    from hubkit.format.safetensors_io import read_store_index

    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    (tmp_path / "variables.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(FormatError):
        read_store_index(str(tmp_path))


@pytest.mark.parametrize("dims", [[2**32, 2**32], [2**62, 2**62, 2**62], [2**31, 2]])
def test_attribute_array_shapes_never_wrap(dims):
    from hubkit.format import hubkit_module_pb2 as pb
    from hubkit.format.attrs import decode_array

    proto = pb.TensorProto(dtype="float32")
    proto.shape.dims.extend(dims)
    with pytest.raises(FormatError):
        decode_array(proto)


@pytest.mark.parametrize("minimum", ["9" * 5000, "1." * 3000, "", 5, None, ["1"], "1.0" + "x" * 100, "v1", "1..2"])
def test_min_hubkit_version_from_a_manifest(hub_env, hostile, minimum):
    archive = gz(tar_bytes([]))
    hostile.serve_json("/acme/m/1.json", manifest_for(archive, min_hubkit_version=minimum))
    hostile.serve_bytes("/acme/m/1.tar.gz", archive)
    if minimum in ("", None):  # absent or empty: no minimum
        resolve(f"{hostile.url}/acme/m/1")
        return
    with pytest.raises(DownloadError, match="min_hubkit_version"):
        resolve(f"{hostile.url}/acme/m/1")


def test_a_future_min_version_still_asks_for_an_upgrade(hub_env, hostile):
    archive = gz(tar_bytes([]))
    hostile.serve_json("/acme/m/1.json", manifest_for(archive, min_hubkit_version="999.0"))
    with pytest.raises(ResolveError, match=r"needs hubkit >= 999\.0"):
        resolve(f"{hostile.url}/acme/m/1")


@pytest.mark.parametrize(("versions", "latest"), [
    ([True, 0, -3, 2], 2), ([1.5, "7", None, 3], 3), ([2**63, 4], 4), ([{"v": 1}, 1], 1),
])
def test_registry_index_versions_must_be_positive_ints(hub_env, hostile, tmp_path, versions, latest):
    index = {"versions": [{"version": v} for v in versions]}
    hostile.serve_json("/acme/m/index.json", index)
    assert registry_latest(f"{hostile.url}/acme/m") == f"{hostile.url}/acme/m/{latest}"
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert registry_latest(str(tmp_path)).endswith(f"/{latest}")


@pytest.mark.parametrize("versions", [[True], [0, -3], [False, "1"], []])
def test_an_index_without_valid_versions(hub_env, hostile, versions):
    hostile.serve_json("/acme/m/index.json", {"versions": [{"version": v} for v in versions]})
    with pytest.raises(ResolveError, match="lists no valid versions"):
        registry_latest(f"{hostile.url}/acme/m")


@pytest.mark.parametrize("name", ["index.json\n", "acme\n", "a\nb", "\nacme", "x" * 129, "a b", "a/b", ".hidden", "-x"])
def test_name_parts_use_fullmatch(name):
    assert not is_registry_name_part(name)
    assert split_module_name(f"acme/{name}") is None


@pytest.mark.parametrize("url", ["https://h/acme/index.json\n/1", "https://h/acme/in\ndex.json/1", "https://h/acme/m/01",
                                 "https://h/acme/m/" + "9" * 5000, "https://h/acme/m/0"])
def test_registry_urls_are_strict(url):
    assert registry_parts(url) is None


def test_credentials_keep_their_case_and_are_never_printed(hub_env):
    port = refused_port()
    handle = f"http://Alice:S3cretPW@127.0.0.1:{port}/acme/m/1"
    assert "Alice:S3cretPW@" in normalize_handle(handle)
    assert "S3cret" not in redact_url(handle)
    for attempt in (handle, handle.replace("/acme/m/1", "/m.tar.gz"), handle + "#sha256=zz", handle.replace("/1", "")):
        with pytest.raises(HubkitError) as info:
            resolve(attempt)
        assert "S3cretPW" not in str(info.value) and "Alice" not in str(info.value), str(info.value)
    with pytest.raises(HubkitError) as info:
        registry_latest(handle.replace("/1", ""))
    assert "S3cretPW" not in str(info.value)


def test_credentials_are_not_recorded_in_the_cache(hub_env, hostile):
    import os

    archive = gz(tar_bytes([]))
    hostile.serve_bytes("/m.tar.gz", archive)
    url = hostile.url.replace("http://", "http://bob:Pa55word@")
    path = resolve(f"{url}/m.tar.gz")
    with open(os.path.join(os.path.dirname(path), "descriptor.json")) as f:
        assert "Pa55word" not in f.read()


@pytest.mark.parametrize(("manifest", "problem"), [
    ({"sha256": "0" * 64, "size": 1, "variants": [{"signatures": {"s": []}}]}, "signatures.s"),
    ({"sha256": "0" * 64, "size": 1, "variants": [{"tags": [1]}]}, "tags"),
    ({"sha256": "0" * 64, "size": 1, "variants": [{"signatures": {"s": {"inputs": {"x": {"dtype": "f", "shape": 3}}}}}]},
     "shape"),
    ({"sha256": "0" * 64, "size": 1, "variants": [{"signatures": {"s": {"inputs": {"x": {"dtype": "f", "shape": [-2]}}}}}]},
     "shape"),
    ({"sha256": "0" * 64, "size": True}, "size"),
    ({"sha256": "0" * 64, "size": 1, "version": True}, "version"),
    ({"sha256": "0" * 64, "size": 1, "format_version": "1"}, "format_version"),
    ({"sha256": "0" * 64, "size": 1, "description": ["x"]}, "description"),
    ({"sha256": "0" * 64, "size": 1, "name": "acme/index.json"}, "name"),
    ([1, 2], "not a JSON object"),
])
def test_the_manifest_schema_names_the_problem(manifest, problem):
    assert problem in (manifest_problem(manifest) or "")


def _conv_module(path: str) -> str:
    import hubkit as hk

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 8, 8, 3])
        k = hk.get_variable("k", [3, 3, 3, 4], initializer=hk.initializers.get("zeros"))
        y = hk.nn.conv2d(x, k, strides=[1, 2, 2, 1], padding="SAME")
        y = hk.nn.max_pool(y, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
        hk.add_signature(inputs=x, outputs=hk.reshape(y, [-1, 16]))

    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


@pytest.mark.parametrize(("op", "attr"), [("Conv2D", "strides"), ("MaxPool", "strides"), ("MaxPool", "ksize"),
                                          ("Reshape", "shape")])
@pytest.mark.parametrize("value", [0, -1, 2**62, -(2**63), float("inf"), float("nan"), -float("inf"), 1e308])
def test_zero_inf_and_huge_numbers_in_shape_and_stride_attributes(tmp_path, op, attr, value):
    import numpy as np

    import hubkit as hk
    from hubkit.format import hubkit_module_pb2 as pb

    path = _conv_module(str(tmp_path / "m"))
    graph = pb.ModuleGraph.FromString(open(f"{path}/graph.pb", "rb").read())  # noqa: SIM115
    changed = 0
    for variant in graph.variants:
        for node in variant.nodes:
            for item in node.attrs.entries:
                if node.op == op and item.key == attr:
                    kind = item.value.WhichOneof("kind")
                    values = getattr(item.value, kind).items if kind in ("list", "tuple") else []
                    for v in values:
                        if isinstance(value, float):
                            v.f = value
                        else:
                            v.i = value
                        changed += 1
    assert changed
    with open(f"{path}/graph.pb", "wb") as f:
        f.write(graph.SerializeToString())
    with contextlib.suppress(HubkitError):
        hk.Module(path)(np.ones((1, 8, 8, 3), np.float32))


def test_planted_handles_cannot_write_terminal_escapes(tmp_path):
    from hubkit.hub import Cache, HubConfig

    entry = tmp_path / "cache" / ("e" * 40)
    (entry / "module").mkdir(parents=True)
    (entry / "descriptor.json").write_text(json.dumps({"handle": "\x1b[2J\x1b]0;pwned\x07https://h/m/1"}))
    [listed] = list(Cache(HubConfig(cache_dir=str(tmp_path / "cache"))).entries())
    assert "\x1b" not in listed.handle and "\x07" not in listed.handle and "https://h/m/1" in listed.handle


def test_a_reason_phrase_cannot_write_terminal_escapes(hub_env, hostile):
    def refuse(h):
        h.send_response(403, "Forbidden\x1b[2J")
        h.send_header("Content-Length", "0")
        h.end_headers()

    hostile.routes["/acme/m/1.json"] = refuse
    with pytest.raises(DownloadError, match="HTTP 403") as info:
        resolve(f"{hostile.url}/acme/m/1")
    assert "\x1b" not in str(info.value)


def test_an_https_registry_cannot_redirect_to_plain_http(hub_env):
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:  # refused before the plain request
        mock.get("https://models.example.org/acme/m/1.json", status=302,
                 headers={"Location": "http://models.example.org/acme/m/1.json"})
        mock.get("http://models.example.org/acme/m/1.json", json={"sha256": "0" * 64, "size": 1})
        with pytest.raises(DownloadError, match="redirected to plain HTTP"):
            resolve("https://models.example.org/acme/m/1")


def test_handles_that_are_not_utf8_resolve_or_fail_as_hubkit_errors(hub_env, tmp_path):
    """A file name that is not UTF-8 (os.fsdecode gives lone surrogates, as sys.argv does) has a cache key."""
    from tests.security.hostile import entry

    raw = os.fsencode(str(tmp_path)) + b"/\xff\xfe.tar.gz"
    with open(raw, "wb") as f:
        f.write(gz(tar_bytes([entry("variables/v.bin", b"x")])))
    path = resolve(os.fsdecode(raw))
    with open(os.path.join(path, "variables", "v.bin"), "rb") as f:
        assert f.read() == b"x"
    for handle in ["http://127.0.0.1:9/\udcff/m.tar.gz", "http://127.0.0.1:9/a/\udcff/1", f"{tmp_path}/\udcff",
                   "file:///nowhere/\udcff.onnx"]:
        with pytest.raises(HubkitError):
            resolve(handle)
