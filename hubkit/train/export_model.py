"""``export_model_as_module``: a trained functional ``Model`` as a module directory, in one call."""

from __future__ import annotations

import os
from typing import Any

from hubkit.errors import SignatureError

__all__ = ["export_model_as_module"]


def export_model_as_module(model: Any, path: str | os.PathLike[str], signature_name: str = "default") -> str:
    """Exports a functional ``Model`` with its current (trained) weights as a module directory.

    The module has one signature, ``signature_name``, whose inputs are the model's inputs (by their
    names; a single one also takes a bare array) and whose outputs are the model's
    outputs (``"default"`` for a single output, else by output name). Its variables keep the model's
    own names (``dense/kernel``, ``hub_layer/hidden/kernel``), so checkpoints and modules agree.

    >>> import hubkit as hk
    >>> inputs = hk.Input(shape=(3,), name="features")
    >>> model = hk.Model(inputs, hk.layers.Dense(2, name="logits")(inputs), name="clf")
    >>> path = hk.export_model_as_module(model, getfixture("tmp_path") / "clf")
    >>> m = hk.Module(path)
    >>> sorted(m.variable_map), m([[1.0, 2.0, 3.0]]).shape
    (['logits/bias', 'logits/kernel'], (1, 2))

    Args:
        model: A ``hubkit.Model`` (functional, built from ``hubkit.Input``\\s).
        path: The directory to create (it must not exist, or be empty).
        signature_name: The name of the module's signature.

    Returns:
        The absolute path of the exported module.

    Raises:
        SignatureError: ``model`` is not a functional model, or the signature name is invalid.
        FormatError: The directory cannot be written.
    """
    from hubkit.graph import placeholder
    from hubkit.module import Module, add_signature, create_module_spec
    from hubkit.train.model import Model

    if not isinstance(model, Model):
        raise SignatureError(
            f"export_model_as_module takes a functional hubkit.Model, got {type(model).__name__}; build one with "
            "hubkit.Model(hubkit.Input(...), outputs), or write a module_fn for hubkit.create_module_spec."
        )
    for variable in model.variables:  # a model never run yet: fix its values now, so it and the module agree
        _ = variable.value
    input_names = list(model.input_names)
    output_names = list(model.output_names)

    def module_fn() -> None:
        feeds = [placeholder(t.dtype, t.shape, name=n) for t, n in zip(model.inputs, input_names)]
        # Model.call, not model(...): the model's own name scope would prefix every new variable name.
        outputs = model.call(feeds[0] if len(feeds) == 1 else dict(zip(input_names, feeds)))
        flat = outputs if isinstance(outputs, (list, tuple)) else (
            [outputs[n] for n in output_names] if isinstance(outputs, dict) else [outputs])
        inputs = dict(zip(input_names, feeds))
        named = {"default": flat[0]} if len(flat) == 1 else dict(zip(output_names, flat))
        add_signature(signature_name, inputs=inputs, outputs=named)

    target = os.path.abspath(os.fspath(path))
    Module(create_module_spec(module_fn)).export(target)
    return target
