"""Writers of foreign formats from hubkit modules (layer 4, beside ``hubkit.importers``).

``export_onnx`` writes a module's signature as an ONNX model; ``onnx`` is imported only when it runs.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["export_onnx"]


def export_onnx(module_or_handle: Any, path: str | os.PathLike, signature: str = "default",
                opset: int | None = None) -> str:
    """Writes one signature of a module as an ONNX model that onnxruntime (or any ONNX runtime) runs.

    Args:
        module_or_handle: a :class:`hubkit.Module`, or any handle ``hubkit.Module`` accepts.
        path: the ``.onnx`` file to write. Initializers of 1 MiB or more go to ``<path>.data`` beside it.
        signature: the signature to export; its inputs and outputs keep their keys as ONNX names, and
            unknown dimensions (the batch) stay dynamic.
        opset: the ONNX opset of the default domain; ``None`` means
            :data:`hubkit.exporters.onnx_export.DEFAULT_OPSET`.

    Returns:
        The absolute path of the written model, which passed ``onnx.checker`` (full check).

    Raises:
        FormatError: the signature uses ops with no faithful ONNX form (every one named, with its nodes),
            or the opset is outside the supported range.
        SignatureError: no such signature.
    """
    from hubkit.exporters.onnx_export import export

    return export(module_or_handle, path, signature=signature, opset=opset)
