"""publish, read_manifest, check_registry and the resolver registry refuse bad input with hub errors."""

import json
import os

import pytest

import hubkit as hk
from hubkit.hub import check_registry, publish, rebuild_indexes
from hubkit.hub.registry import read_manifest
from tests.hub.helpers import fake_validate


def test_publish_of_a_directory_without_marker(tmp_path):
    with pytest.raises(hk.RegistryError, match=r"is not a hubkit module directory: it is a directory without "
                                              r"'hubkit_module.pb'\. Publish an exported module"):
        publish(str(tmp_path), str(tmp_path / "reg"), "acme/x", validate=fake_validate)
    with pytest.raises(hk.RegistryError, match=r"^Module directory '.*nothing' does not exist\.$"):
        publish(str(tmp_path / "nothing"), str(tmp_path / "reg"), "acme/x", validate=fake_validate)
    (tmp_path / "file").write_text("x")
    with pytest.raises(hk.RegistryError, match=r"is not a hubkit module directory: it is a file\."):
        publish(str(tmp_path / "file"), str(tmp_path / "reg"), "acme/x", validate=fake_validate)


def test_publish_of_a_module_that_does_not_load(fake_module, tmp_path):
    def broken(module_dir):
        raise hk.FormatError("graph.pb is broken")

    with pytest.raises(hk.RegistryError, match=r"does not load, so it cannot be published: graph.pb is broken"):
        publish(fake_module, str(tmp_path / "reg"), "acme/x", validate=broken)
    assert not (tmp_path / "reg" / "acme" / "x").exists()


@pytest.mark.parametrize("version", [0, -1, True, 1.5, "2"])
def test_publish_with_a_bad_version(fake_module, tmp_path, version):
    with pytest.raises(hk.RegistryError, match=rf"Version {version!r} is not a positive integer"):
        publish(fake_module, str(tmp_path / "reg"), "acme/x", version=version, validate=fake_validate)


def test_read_manifest_missing_or_not_json(tmp_path):
    with pytest.raises(hk.RegistryError, match=r"Manifest .*nope.json' cannot be read: .*No such file"):
        read_manifest(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(hk.RegistryError, match=r"Manifest .*bad.json' cannot be read: Expecting property name"):
        read_manifest(str(tmp_path / "bad.json"))


def test_malformed_manifest_is_reported_by_check_and_left_out_of_indexes(fake_module, tmp_path):
    reg = str(tmp_path / "reg")
    publish(fake_module, reg, "acme/x", validate=fake_validate)
    manifest_path = tmp_path / "reg" / "acme" / "x" / "1.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = 7
    manifest_path.write_text(json.dumps(manifest))
    assert rebuild_indexes(reg)["modules"] == {}
    problems = check_registry(reg)
    assert any("is malformed: its 'version' is 7, but its file name says 1" in p for p in problems), problems


def test_check_registry_with_modules_not_an_object(fake_module, tmp_path):
    reg = str(tmp_path / "reg")
    publish(fake_module, reg, "acme/x", validate=fake_validate)
    (tmp_path / "reg" / "index.json").write_text('{"modules": []}')
    assert check_registry(reg) == [
        f"Root index {os.path.join(reg, 'index.json')!r} is missing or malformed: 'modules' is not an object."
    ]


def test_unregister_a_resolver_never_registered():
    resolver = object()
    with pytest.raises(hk.ResolveError, match=r"Resolver <object object at .*> is not registered"):
        hk.unregister_resolver(resolver)


def test_handle_no_resolver_supports(hub_env):
    with pytest.raises(hk.ResolveError, match=r"No resolver supports handle 'ftp://example.invalid/x'; tried: "
                                              r"LocalArchiveResolver"):
        hk.resolve("ftp://example.invalid/x")


def test_registry_url_without_version_gets_a_hint(hub_env):
    with pytest.raises(hk.ResolveError, match=r"^Handle 'http://127.0.0.1:9/acme/x' has no version; registry handles "
                                              r"look like .*'http://127.0.0.1:9/acme/x/1'.*registry_latest"):
        hk.resolve("http://127.0.0.1:9/acme/x")


def test_blank_handle(hub_env):
    with pytest.raises(hk.ResolveError, match=r"A module handle must be a non-empty path or URL, got '  '"):
        hk.resolve("  ")


@pytest.mark.parametrize("handle", [None, 3, b"/path"])
def test_resolve_refuses_handles_that_are_not_strings_or_paths(handle):
    with pytest.raises(hk.ResolveError, match="A module handle must be a string or path"):
        hk.resolve(handle)
