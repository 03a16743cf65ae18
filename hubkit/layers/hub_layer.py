"""``HubLayer``: a hub module used as a layer of a functional model, fine-tunable when trainable."""

from __future__ import annotations

import os
from typing import Any

from hubkit.errors import GraphError, SignatureError
from hubkit.layers.base import Layer, register_layer
from hubkit.runtime import Variable
from hubkit.runtime.tracking import apply_deferred

__all__ = ["HubLayer"]

_TRAIN = frozenset({"train"})


@register_layer
class HubLayer(Layer):
    """Wraps a module (a handle, a directory or a ``ModuleSpec``) as a layer.

    With ``trainable=True`` the module's variables are trained with the rest of the model, and
    when the module has a ``{"train"}`` variant (e.g. with dropout and batch-norm updates) and no
    ``tags`` are given, that variant is used in training and the default variant for inference.
    Both variants read the same variables.

    Args:
        handle: what ``hubkit.Module`` accepts: a URL, a path, or a ``ModuleSpec``.
        trainable: whether fitting the model trains the module's variables.
        signature: the signature to call (``"default"`` when None).
        output_key: which output to return; None returns the ``"default"`` output.
        signature_outputs_as_dict: return the signature's whole output dict (as ``hub.KerasLayer`` does
            for TF1 modules); needs ``signature`` and excludes ``output_key``.
        tags: always use this variant (disables the automatic ``{"train"}`` choice).
        name: the layer's name.
    """

    input_check_axes = ()

    def __init__(
        self,
        handle: Any,
        trainable: bool = False,
        signature: str | None = None,
        output_key: str | None = None,
        tags: Any = None,
        name: str | None = None,
        signature_outputs_as_dict: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if signature_outputs_as_dict and output_key is not None:
            raise SignatureError("HubLayer: pass either output_key or signature_outputs_as_dict=True, not both.")
        if signature_outputs_as_dict and signature is None:
            raise SignatureError("HubLayer: signature_outputs_as_dict=True needs a signature= to return the outputs of.")
        super().__init__(trainable=trainable, name=name, **kwargs)
        self.signature_outputs_as_dict = bool(signature_outputs_as_dict)
        self.handle = handle
        self.signature = signature
        self.output_key = output_key
        self.tags = None if tags is None else sorted(tags)
        self._module_trainable = bool(trainable)
        self._modules: dict[frozenset[str], Any] = {}

    # -- modules ---------------------------------------------------------------------------------------
    def _primary(self) -> Any:
        """The module whose variables this layer owns (created on first use)."""
        if not self._modules:
            from hubkit.module import Module

            handle = os.fspath(self.handle) if isinstance(self.handle, os.PathLike) else self.handle
            tags = frozenset(self.tags or ())
            module = Module(handle, trainable=self._module_trainable, name=self.name, tags=tags)
            self._modules[tags] = module
            self._apply_parked(module)
        return next(iter(self._modules.values()))

    def _apply_parked(self, module: Any) -> None:
        """Checkpoint values restored before the module was loaded (deferred restore)."""
        variables = module.flat_variable_map
        ready = {k: p for k, p in self._deferred.items() if k in variables}
        for k in ready:
            del self._deferred[k]
        apply_deferred(self, ready)

    def _module_for(self, training: bool) -> Any:
        primary = self._primary()
        if self.tags is not None or not (training and self._module_trainable and self.trainable):
            return primary
        if _TRAIN not in primary.spec.get_tags():
            return primary
        module = self._modules.get(_TRAIN)
        if module is None:
            module = self._modules[_TRAIN] = primary.with_tags(_TRAIN)  # same Variable objects
        return module

    @property
    def module(self) -> Any:
        """The module serving inference (its variables are the layer's variables)."""
        return self._primary()

    def _own_variables(self) -> list[Variable]:
        return self._primary().variables if self._modules else []

    def _checkpoint_children(self) -> list[tuple[str, Any]]:
        return list(self._primary().flat_variable_map.items()) if self._modules else []

    # -- layer ---------------------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        self._primary()

    def call(self, inputs: Any, training: Any = None) -> Any:
        module = self._module_for(bool(training) if not hasattr(training, "graph") else True)
        if self.signature_outputs_as_dict:
            return module(inputs, signature=self.signature, as_dict=True)
        if self.output_key is None:
            names = module.get_output_info_dict(signature=self.signature)
            if "default" not in names:
                raise SignatureError(
                    f"HubLayer {self.name!r}: signature {self.signature or 'default'!r} has no 'default' output; "
                    f"pick one with output_key= among {sorted(names)}."
                )
            return module(inputs, signature=self.signature)
        outputs = module(inputs, signature=self.signature, as_dict=True)
        if self.output_key not in outputs:
            raise SignatureError(
                f"HubLayer {self.name!r}: signature {self.signature or 'default'!r} has no output "
                f"{self.output_key!r}; expected one of {sorted(outputs)}."
            )
        return outputs[self.output_key]

    def get_config(self) -> dict[str, Any]:
        if not isinstance(self.handle, (str, os.PathLike)):
            raise GraphError(f"HubLayer {self.name!r} was made from a ModuleSpec object; get_config needs a handle.")
        return {
            "name": self.name,
            "handle": os.fspath(self.handle),
            "trainable": self._module_trainable,
            "signature": self.signature,
            "output_key": self.output_key,
            "signature_outputs_as_dict": self.signature_outputs_as_dict,
            "tags": self.tags,
        }

