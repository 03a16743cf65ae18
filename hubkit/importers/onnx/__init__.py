"""The ONNX importer: an ``.onnx`` model becomes a :class:`~hubkit.module.spec.ModuleSpec`.

``load_spec(path)`` reads the model (a file, or a directory holding exactly one ``.onnx`` file and its
external-data files), normalises it to one opset with ``onnx.version_converter``, checks it with
``onnx.checker`` and infers its shapes, then translates every node onto hubkit ops (the ONNX-exact ones in
``hubkit/ops/onnx_*.py`` where hubkit's differ). Initializers become variables; the model's inputs and
outputs become the ``default`` signature (see :func:`signature_keys` for names that are not valid keys).

``onnx`` is an optional extra, imported only here: ``pip install 'hubkit-ml[onnx]'``.
"""

from __future__ import annotations

from hubkit.importers.onnx.load import TARGET_OPSET, load_spec, require_onnx
from hubkit.importers.onnx.names import signature_keys
from hubkit.importers.onnx.translate import SUPPORTED_OPS

__all__ = ["SUPPORTED_OPS", "TARGET_OPSET", "load_spec", "require_onnx", "signature_keys"]
