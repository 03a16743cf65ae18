"""``convert``: writes any module hubkit reads (TF1 Hub, ONNX, hubkit) in the hubkit format."""

from __future__ import annotations

import os

from hubkit.module.loader import load_module_spec
from hubkit.module.module import Module

__all__ = ["convert"]


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Reads the module at ``src`` (format detected from its bytes) and exports it to ``dst`` as a hubkit module.

    Args:
        src: a TF1 Hub module directory, an ONNX model, a hubkit module, or any handle ``hubkit.resolve`` accepts.
        dst: the directory to write (must not exist, or be empty).

    Returns:
        The absolute path of the written module; ``hubkit publish`` accepts it.

    Raises:
        FormatError: ``src`` is not a module hubkit reads, or uses ops hubkit does not support (all named).
    """
    spec = load_module_spec(src)
    Module(spec).export(dst)
    return os.path.abspath(os.fspath(dst))
