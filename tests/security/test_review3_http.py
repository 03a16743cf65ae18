"""Review 3 (issue 13), registry dates and HTTP: a bad manifest date never breaks publishing, no redirect hop
leaves HTTPS, and a server that trickles headers or a small body is cut off by an overall deadline."""

from __future__ import annotations

import json

import pytest

from hubkit.hub import catalog
from hubkit.hub.manifest_schema import manifest_problem, published_at_utc
from hubkit.hub.registry import check_registry, publish
from tests.hub.helpers import fake_validate

BAD_DATES = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-01:00", "1969-12-31T23:59:59Z",
             "9999-12-31T23:00:00-23:59", "not a date", "2024-13-01", "2024-05-01T12:00:00+25:00",
             "2024-05-01T12:00:00" + "0" * 100, "\x00", " 2024-05-01"]


@pytest.mark.parametrize("date", BAD_DATES)
def test_a_bad_published_at_is_a_schema_problem(date):
    problem = manifest_problem({"sha256": "0" * 64, "size": 1, "published_at": date})
    assert problem is not None and "published_at" in problem
    assert published_at_utc(date) is None


@pytest.mark.parametrize("date", ["2024-05-01T12:00:00+00:00", "2024-05-01T12:00:00+02:00", "2024-05-01",
                                  "1970-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"])
def test_a_good_published_at_passes(date):
    assert manifest_problem({"sha256": "0" * 64, "size": 1, "published_at": date}) is None
    assert published_at_utc(date) is not None


ODD_VALUES = BAD_DATES + [None, 7, 10**5000, [], {}, float("nan"), "", "x" * 100_000]


@pytest.mark.parametrize("value", ODD_VALUES, ids=[str(i) for i in range(len(ODD_VALUES))])
def test_the_catalog_date_never_raises(value):
    text = catalog._published(value)
    assert isinstance(text, str)


@pytest.mark.parametrize("date", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00"])
def test_a_bad_manifest_date_never_stops_other_publishes(tmp_path, fake_module, date):
    root = tmp_path / "reg"
    publish(fake_module, str(root), "acme/victim", validate=fake_validate)
    path = root / "acme" / "victim" / "1.json"
    manifest = json.loads(path.read_text())
    manifest["published_at"] = date
    path.write_text(json.dumps(manifest))
    publish(fake_module, str(root), "other/module", validate=fake_validate)
    publish(fake_module, str(root), "acme/victim", validate=fake_validate)
    index = json.loads((root / "index.json").read_text())
    assert sorted(index["modules"]) == ["acme/victim", "other/module"]
    assert index["modules"]["acme/victim"]["versions"] == [2]
    assert "other/module" in (root / "index.html").read_text()
    problems = check_registry(str(root))
    assert any("acme/victim/1" in p and "published_at" in p for p in problems), problems


def test_the_catalog_renders_a_bad_date_it_is_given_directly():
    page = catalog.render_catalog({"acme/m": [{"version": 1, "size": 1, "sha256": "0" * 64,
                                               "published_at": "0001-01-01T00:00:00+01:00"}]})
    assert "acme/m" in page
