"""Declarative objects (initializers, regularizers): a ``class_name`` and the plain-data arguments
that rebuild it, so a graph records them as data and loads them without code.

>>> from hubkit.runtime.initializers import Initializer, get
>>> init = get({"class_name": "constant", "config": {"value": 2.0}})
>>> init.config, isinstance(init, Declarative)
({'class_name': 'constant', 'config': {'value': 2.0}}, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from hubkit.errors import GraphError

__all__ = ["Declarative", "from_identifier"]

D = TypeVar("D", bound="Declarative")


class Declarative:
    """Base of objects that are their config: subclasses set ``class_name`` and define ``_params()``.

    ``kind`` (``"initializer"``) and ``namespace`` (``"hubkit.initializers"``) are set once per family
    and name it in reprs and error messages.
    """

    class_name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    namespace: ClassVar[str] = ""
    # Appended to the error for an identifier of the wrong type, e.g. how to pass a value instead.
    identifier_hint: ClassVar[str] = ""

    def _params(self) -> dict[str, Any]:
        return {}

    @property
    def config(self) -> dict[str, Any]:
        """Plain, JSON-able data that the family's ``get`` turns back into an equal object."""
        return {"class_name": self.class_name, "config": self._params()}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.config == self.config  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{self.namespace}.{self.class_name}({args})"


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def from_identifier(identifier: Any, base: type[D], by_name: Mapping[str, type[D]]) -> D | None:
    """Turns a name, a ``{"class_name", "config"}`` dict or an object of ``base`` into an object of ``base``.

    Args:
        identifier: the name (default arguments), the config, an object (returned as is) or None.
        base: the family's base class, e.g. ``Initializer``.
        by_name: the family's classes by ``class_name``.

    Returns:
        The object, or None for None.

    Raises:
        GraphError: the name is unknown (the known names are listed), or the config does not fit.
    """
    if identifier is None or isinstance(identifier, base):
        return identifier
    kind = base.kind
    name: Any
    params: Any
    if isinstance(identifier, str):
        name, params = identifier, {}
    elif isinstance(identifier, dict):
        name = identifier.get("class_name")
        params = identifier.get("config") or {}
        if not isinstance(name, str) or not isinstance(params, dict):
            raise GraphError(
                f"{_a(kind).capitalize()} config needs a 'class_name' string and a 'config' dict, got {identifier!r}."
            )
    else:
        hint = f" {base.identifier_hint}" if base.identifier_hint else ""
        raise GraphError(
            f"Cannot use {identifier!r} as {_a(kind)}; pass a name, a config dict or a "
            f"{base.namespace} object{hint}."
        )
    cls = by_name.get(name)
    if cls is None:
        raise GraphError(f"Unknown {kind} {name!r}; expected one of {sorted(by_name)}.")
    try:
        return cls(**params)
    except TypeError as e:
        raise GraphError(f"Bad config {params!r} for {kind} {name!r}: {e}.") from None
