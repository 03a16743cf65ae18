"""Review 3 (issue 13), hub and CLI defects: malformed URL handles end as HubkitErrors, never bare ValueErrors."""

from __future__ import annotations

import pytest

from hubkit.errors import HubkitError
from hubkit.hub import handles


@pytest.mark.parametrize(
    "handle", ["http://[::1", "https://[::1/a/b/1", "http://[fe80::1%/x", "http://a]b[/c"]
)
def test_a_malformed_ipv6_handle_is_a_hubkit_error(handle: str) -> None:
    assert handles.is_url(handle)
    with pytest.raises(HubkitError):
        handles.normalize_handle(handle)


@pytest.mark.parametrize("handle", ["C:\\\\models\\\\m", "models/m", "x.onnx", "", " "])
def test_non_urls_are_still_not_urls(handle: str) -> None:
    assert not handles.is_url(handle)
