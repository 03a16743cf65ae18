"""Class 6: a malformed manifest is reported by `hubkit registry check`, skipped by the catalog and the
indexes, and never makes publishing of other modules fail."""

from __future__ import annotations

import json
import os

import pytest

from hubkit.hub.registry import check_registry, publish
from tests.hub.helpers import fake_validate

POISON = {
    "signature-not-a-dict": {"variants": [{"tags": [], "signatures": ["default"]}]},
    "tag-not-a-string": {"variants": [{"tags": [7], "signatures": {}}]},
    "scalar-shape": {"variants": [{"tags": [], "signatures": {"s": {"inputs": {"x": {"dtype": "f", "shape": 3}}}}}]},
    "inputs-a-list": {"variants": [{"tags": [], "signatures": {"s": {"inputs": [1]}}}]},
    "variants-a-string": {"variants": "all"},
    "description-a-dict": {"description": {"<script>": 1}},
    "huge-min-version": {"min_hubkit_version": "9" * 5000},
}


@pytest.mark.parametrize("poison", sorted(POISON))
def test_one_bad_manifest_never_stops_other_publishes(tmp_path, fake_module, poison):
    root = tmp_path / "reg"
    publish(fake_module, str(root), "acme/victim", validate=fake_validate)
    path = root / "acme" / "victim" / "1.json"
    manifest = json.loads(path.read_text())
    manifest.update(POISON[poison])
    path.write_text(json.dumps(manifest))
    publish(fake_module, str(root), "other/module", validate=fake_validate)  # not fatal to others
    publish(fake_module, str(root), "acme/victim", validate=fake_validate)  # nor to the same module's next version
    index = json.loads((root / "index.json").read_text())
    assert sorted(index["modules"]) == ["acme/victim", "other/module"]
    assert index["modules"]["acme/victim"]["versions"] == [2]
    html = (root / "index.html").read_text()
    assert "other/module" in html
    problems = check_registry(str(root))
    assert any("acme/victim/1" in p and "malformed" in p for p in problems), problems


def test_publish_checks_what_it_writes_with_the_same_schema(tmp_path, fake_module):
    from hubkit.errors import RegistryError

    def bad_validate(module_dir: str) -> dict:
        return {"format_version": 1, "variants": [{"tags": ["serve"], "signatures": {"s": {"inputs": {"x": {
            "dtype": "float32", "shape": 3}}}}}]}

    root = tmp_path / "reg"
    with pytest.raises(RegistryError, match=r"malformed manifest.*shape"):
        publish(fake_module, str(root), "acme/m", validate=bad_validate)
    assert not os.path.exists(root / "acme" / "m" / "1.tar.gz")
    assert not os.path.exists(root / "acme" / "m" / "1.json")


def test_the_resolver_refuses_a_poisoned_manifest_before_downloading(hub_env, hostile):
    from hubkit import resolve
    from hubkit.errors import DownloadError
    from tests.security.hostile import gz, manifest_for, tar_bytes

    archive = gz(tar_bytes([]))
    for i, poison in enumerate(sorted(POISON)):
        hostile.serve_json(f"/acme/m/{i + 1}.json", manifest_for(archive, version=i + 1, **POISON[poison]))
        hostile.serve_bytes(f"/acme/m/{i + 1}.tar.gz", archive)
        with pytest.raises(DownloadError, match="malformed"):
            resolve(f"{hostile.url}/acme/m/{i + 1}")
        assert hostile.count(f"/acme/m/{i + 1}.tar.gz") == 0
