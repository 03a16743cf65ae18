"""How ONNX names become hubkit names: signature keys and variable names.

A signature key is ``[A-Za-z0-9_][A-Za-z0-9_.-]*``. An ONNX input or output name that is not one keeps its
valid characters, every other character becomes ``_`` (``"input:0"`` -> ``"input_0"``, ``"/x/y"`` ->
``"_x_y"``), an empty name becomes ``input_<i>`` / ``output_<i>``, and a key taken twice gets ``_1``,
``_2``, ... appended in graph order. Valid names are kept as they are, so most models need no mapping.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["signature_keys", "variable_name"]

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_BAD_KEY_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")
_BAD_NODE_CHAR = re.compile(r"[^A-Za-z0-9_.\-/]")


def signature_keys(names: Sequence[str], kind: str) -> list[str]:
    """Signature keys for the ONNX value ``names`` (``kind`` is ``"input"`` or ``"output"``), in order.

    >>> signature_keys(["x", "input:0", "", "x"], "input")
    ['x', 'input_0', 'input_2', 'x_1']
    """
    keys: list[str] = []
    taken: set[str] = set()
    for i, name in enumerate(names):
        key = name if _KEY.match(name) else _BAD_KEY_CHAR.sub("_", name)
        if not key:
            key = f"{kind}_{i}"
        elif not _KEY.match(key):  # starts with '.' or '-'
            key = "_" + key
        base, n = key, 1
        while key in taken:
            key = f"{base}_{n}"
            n += 1
        taken.add(key)
        keys.append(key)
    return keys


def variable_name(name: str, taken: set[str]) -> str:
    """A unique module variable name for the initializer ``name`` (``"conv1.weight"`` stays as is)."""
    out = _BAD_NODE_CHAR.sub("_", name).strip("/") or "initializer"
    out = re.sub("/+", "/", out)
    if not re.match(r"^[A-Za-z0-9_.]", out):
        out = "_" + out
    base, n = out, 1
    while out in taken:
        out = f"{base}_{n}"
        n += 1
    taken.add(out)
    return out
