"""The one schema of a registry manifest (``<publisher>/<name>/<N>.json``), checked on read and on write.

A registry is written by its publishers and served to everyone, so a manifest is untrusted input: the
resolvers check it before they download anything, :func:`hubkit.hub.registry.publish` checks what it
writes and what it reads back when it rebuilds the indexes (a bad entry is left out, never fatal to the
others), and ``hubkit registry check`` reports every bad entry. All of them use :func:`manifest_problem`.

>>> manifest_problem({"sha256": "0" * 64, "size": 10})
>>> manifest_problem({"sha256": "0" * 64, "size": 10, "variants": [{"tags": [], "signatures": []}]})
"its 'variants[0].signatures' is [], not an object of signature name -> {'inputs': {...}, 'outputs': {...}}"
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from hubkit.hub.handles import is_byte_count, is_sha256_hex, split_module_name

__all__ = ["MAX_VERSION", "manifest_problem", "min_version_tuple", "published_at_utc"]

MAX_VERSION = (1 << 63) - 1  # module versions are int64 (as registry URLs spell them, at most 18 digits)
_MIN_HUBKIT_VERSION = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}([.+-]?[A-Za-z0-9]{1,16}){0,3}")
_MAX_TEXT = 64 << 10  # longest description, producer or time stamp
_MAX_NAME = 256  # longest tag, signature, input/output or dtype name
_TEXT_FIELDS = ("archive", "description", "producer", "published_at")
_YEARS = (1970, 9999)  # the years a 'published_at' may name, in UTC


def _is_int(value: Any, low: int = 0, high: int = MAX_VERSION) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_NAME


def min_version_tuple(text: str) -> tuple[int, ...]:
    """The numeric parts of a ``min_hubkit_version`` that :func:`manifest_problem` accepted.

    >>> min_version_tuple("0.10.2rc1")
    (0, 10, 2)
    """
    numbers = re.match(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}", text)
    return tuple(int(p) for p in numbers.group(0).split(".")) if numbers else (0,)


def _tensor_infos_problem(infos: Any, where: str) -> str | None:
    if not isinstance(infos, dict):
        return f"its {where!r} is {_short(infos)}, not an object of name -> {{'dtype': ..., 'shape': ...}}"
    for key, info in infos.items():
        if not _is_name(key) or not isinstance(info, dict):
            return f"its {where!r} has the entry {_short(key)}: {_short(info)}, not name -> {{'dtype': ..., 'shape': ...}}"
        if not _is_name(info.get("dtype")):
            return f"its '{where}.{key}.dtype' is {_short(info.get('dtype'))}, not a dtype name"
        shape = info.get("shape")
        if shape is not None and not (
            isinstance(shape, list) and len(shape) <= 64 and all(d is None or _is_int(d) for d in shape)
        ):
            return (f"its '{where}.{key}.shape' is {_short(shape)}, not null or a list of at most 64 dimensions "
                    "(each a non-negative int or null)")
    return None


def _variants_problem(variants: Any) -> str | None:
    if not isinstance(variants, list):
        return f"its 'variants' is {_short(variants)}, not a list"
    for i, variant in enumerate(variants):
        if not isinstance(variant, dict):
            return f"its 'variants[{i}]' is {_short(variant)}, not an object"
        tags = variant.get("tags", [])
        if not isinstance(tags, list) or not all(_is_name(t) for t in tags):
            return f"its 'variants[{i}].tags' is {_short(tags)}, not a list of strings"
        signatures = variant.get("signatures", {})
        if not isinstance(signatures, dict):
            return (f"its 'variants[{i}].signatures' is {_short(signatures)}, not an object of signature name -> "
                    "{'inputs': {...}, 'outputs': {...}}")
        for name, signature in signatures.items():
            where = f"variants[{i}].signatures.{name}"
            if not _is_name(name) or not isinstance(signature, dict):
                return f"its {where!r} is {_short(signature)}, not an object {{'inputs': {{...}}, 'outputs': {{...}}}}"
            for part in ("inputs", "outputs"):
                problem = _tensor_infos_problem(signature.get(part, {}), f"{where}.{part}")
                if problem is not None:
                    return problem
    return None


def manifest_problem(manifest: Any, name: str | None = None, version: int | None = None) -> str | None:
    """What makes ``manifest`` invalid, as the end of a sentence; ``None`` when it is valid.

    Args:
        manifest: The parsed JSON (anything: it came from outside).
        name: The module ``"publisher/name"`` the manifest must describe, if known (from its path or URL).
        version: The version it must describe, if known.

    Returns:
        ``None``, or e.g. ``"its 'size' is -3, not a byte count"``.
    """
    if not isinstance(manifest, dict):
        return f"it is {_short(manifest)}, not a JSON object"
    if not is_sha256_hex(manifest.get("sha256")) or not is_byte_count(manifest.get("size")):
        return "it lacks a valid 'sha256' (64 lowercase hex digits) and 'size' (bytes)"
    stated = manifest.get("version", version)
    if version is not None and not (_is_int(stated, 1) and stated == version):
        return f"its 'version' is {_short(stated)}, but its file name says {version}"
    if stated is not None and not _is_int(stated, 1):
        return f"its 'version' is {_short(stated)}, not a positive integer"
    stated_name = manifest.get("name", name)
    if stated_name is not None and (not isinstance(stated_name, str) or split_module_name(stated_name) is None):
        return f"its 'name' is {_short(stated_name)}, not a valid 'publisher/name'"
    if name is not None and stated_name != name:
        return f"its 'name' is {_short(stated_name)}, but it lies in the directory of {name!r}"
    fmt = manifest.get("format_version", 1)
    if not _is_int(fmt, 1, 1 << 31):
        return f"its 'format_version' is {_short(fmt)}, not a positive integer"
    minimum = manifest.get("min_hubkit_version")
    if minimum not in (None, "") and (not isinstance(minimum, str) or _MIN_HUBKIT_VERSION.fullmatch(minimum) is None):
        return f"its 'min_hubkit_version' is {_short(minimum)}, not a version such as '0.4.1'"
    for key in _TEXT_FIELDS:
        value = manifest.get(key, "")
        if not isinstance(value, str) or len(value) > _MAX_TEXT:
            return f"its {key!r} is {_short(value)}, not a string of at most {_MAX_TEXT} characters"
    published = manifest.get("published_at", "")
    if published != "" and published_at_utc(published) is None:
        return (f"its 'published_at' is {_short(published)}, not an ISO 8601 time between the years "
                f"{_YEARS[0]} and {_YEARS[1]}")
    return _variants_problem(manifest.get("variants", []))


def published_at_utc(value: Any) -> datetime.datetime | None:
    """A manifest's ``published_at`` as a time in UTC (a time without zone is taken as UTC); ``None`` if invalid.

    Never raises: ``"0001-01-01T00:00:00+01:00"`` parses, but lies before year 1 in UTC (``OverflowError``).

    >>> published_at_utc("2024-05-01T12:00:00+02:00").isoformat()
    '2024-05-01T10:00:00+00:00'
    >>> published_at_utc("0001-01-01T00:00:00+01:00") is None
    True
    """
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        moment = moment.astimezone(datetime.timezone.utc)
    except (ValueError, OverflowError, TypeError):
        return None
    return moment if _YEARS[0] <= moment.year <= _YEARS[1] else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
