"""``Layer``: an object that owns variables, tracks sub-layers and builds its computation on call.

Any :class:`~hubkit.Variable` or :class:`Layer` assigned as an attribute, or held in a list, tuple
or dict attribute, is tracked: it shows up in ``variables``, ``submodules`` and checkpoints.
Weights are created by :meth:`Layer.build` on the first call, so a layer needs only its output
size. Calling a layer on symbolic tensors adds its ops to the tensors' graph, reading the same
variables every time (weights are shared between calls, even across graphs); calling it on NumPy
arrays runs it now and returns arrays.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Graph, GraphKeys, Tensor, as_dtype, format_shape, placeholder
from hubkit.graph.shapes import merge_shapes
from hubkit.layers.recording import (
    CallRecord,
    _call_state,
    flatten,
    layer_history,
    map_structure,
    recorded_graph_state,
    suppress_recording,
)
from hubkit.runtime import Session, Variable, initializers, regularizers
from hubkit.runtime.scopes import VariableScope, get_variable, variable_scope
from hubkit.runtime.tracking import assign_value, escape_name, hand_down_deferred

__all__ = ["CallRecord", "Layer", "get_layer_class", "register_layer"]


# -- naming ----------------------------------------------------------------------------------------
_names_lock = threading.Lock()
_name_counts: dict[str, int] = {}


def to_snake_case(name: str) -> str:
    """``Conv2DTranspose`` -> ``conv2d_transpose``, ``Dense`` -> ``dense``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()
    return s.replace("2_d", "2d").replace("1_d", "1d").replace("3_d", "3d")


def unique_layer_name(base: str) -> str:
    """Process-wide unique names as Keras gives them: ``dense``, ``dense_1``, ``dense_2``..."""
    with _names_lock:
        n = _name_counts.get(base, 0)
        _name_counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def _graph_of(structure: Any) -> Graph | None:
    graph = None
    for leaf in flatten(structure):
        if isinstance(leaf, Tensor):
            if graph is not None and leaf.graph is not graph:
                raise GraphError(f"Layer inputs come from different graphs ({leaf.name!r} is from another one).")
            graph = leaf.graph
    return graph


def _is_trackable(value: Any) -> bool:
    if isinstance(value, (Variable, Layer)):
        return True
    if isinstance(value, dict):
        return any(_is_trackable(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_is_trackable(v) for v in value)
    return getattr(value, "_checkpoint_children", None) is not None


# A frozen layer keeps each variable's own ``trainable`` flag here (on the variable) to restore it.
_OWN_TRAINABLE = "_hk_own_trainable"


class UnexpectedArgumentsError(TypeError):
    """A layer constructor got keyword arguments it does not know (a ``TypeError``, as Python raises).

    Attributes:
        keys: the refused argument names, sorted.
    """

    def __init__(self, class_name: str, keys: list[str]) -> None:
        super().__init__(f"{class_name} got unexpected keyword arguments {keys}.")
        self.keys = keys


# Every layer's get_config holds these; from_config applies them itself when a constructor lacks them.
_BASE_CONFIG_KEYS = ("dtype", "name", "trainable")


def positive_int(value: Any, what: str, layer: str) -> int:
    """``value`` as a positive int, or a GraphError naming the layer and the argument."""
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise GraphError(f"Layer {layer!r}: {what} must be a positive integer, got {value!r}.")
    return int(value)


def _init_parameters(cls: type[Layer]) -> tuple[set[str], bool]:
    """The keyword parameters of ``cls.__init__`` and whether it takes ``**kwargs``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return names, takes_any


# -- Layer -----------------------------------------------------------------------------------------
class Layer:
    """Base class of layers: tracked state, build-on-first-call and shared weights.

    Subclasses override :meth:`build` (create weights with :meth:`add_weight`) and :meth:`call`
    (the computation, given symbolic tensors), and :meth:`get_config` when their constructor
    takes arguments.

    Args:
        trainable: whether the layer's variables are trained.
        name: the layer's name; a unique one from the class name ("dense", "dense_1") when None.
        dtype: the dtype of the weights; by default that of the first float input (float32 when
            the first input is not float), as in TensorFlow 1.

    >>> import numpy as np, hubkit as hk
    >>> class Scale(hk.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight("w", [input_shape[-1]], initializer="ones")
    ...     def call(self, x):
    ...         return x * self.w
    >>> s = Scale(name="scale")
    >>> s(np.array([[1.0, 2.0]], np.float32))
    array([[1., 2.]], dtype=float32)
    >>> [v.name for v in s.variables]
    ['scale/w']
    """

    # Axes of the input whose size the weights depend on; a later call must agree on them.
    input_check_axes: tuple[int, ...] = (-1,)

    def __init__(self, trainable: bool = True, name: str | None = None, dtype: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise UnexpectedArgumentsError(type(self).__name__, sorted(kwargs))
        self._name = name or unique_layer_name(to_snake_case(type(self).__name__))
        self._trainable = bool(trainable)
        self._dtype = as_dtype(dtype or "float32")
        self._dtype_from_input = dtype is None  # as in TF1: the first float input decides
        # TF1 ``tf.layers`` mode (see ``in_variable_scope``): (name, default_name, reuse), then the scope.
        self._scope_request: tuple[str | None, str, Any] | None = None
        self._variable_scope: VariableScope | None = None
        self.built = False
        self._weights: dict[str, Variable] = {}
        self._regularizers: dict[str, Any] = {}
        self._build_shapes: list[tuple | None] | None = None
        self._inbound: list[CallRecord] = []
        self._deferred: dict[str, Any] = {}  # checkpoint values waiting for their weight
        self._eager_cache: dict[Any, Any] = {}

    # -- tracking ----------------------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_") and _is_trackable(value):
            hand_down_deferred(self, name, value)

    def _tracked_attributes(self) -> list[tuple[str, Any]]:
        """Public attributes holding variables or layers, in assignment order."""
        return [(k, v) for k, v in self.__dict__.items() if not k.startswith("_") and _is_trackable(v)]

    def _checkpoint_children(self) -> list[tuple[str, Any]]:
        """Named dependencies for checkpoints: weights by their name, then tracked attributes."""
        children: list[tuple[str, Any]] = list(self._weights.items())
        seen = {id(v) for v in self._weights.values()}
        for name, value in self._tracked_attributes():
            for path, leaf in _leaves(name, value):
                if id(leaf) not in seen:
                    seen.add(id(leaf))
                    children.append((path, leaf))
        return children

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self):
        return self._dtype

    @property
    def submodules(self) -> list[Layer]:
        """Every layer tracked by this one, recursively, depth first, each once."""
        out: list[Layer] = []
        seen = {id(self)}

        def visit(layer: Layer) -> None:
            for child in layer._direct_sublayers():
                if id(child) not in seen:
                    seen.add(id(child))
                    out.append(child)
                    visit(child)

        visit(self)
        return out

    def _direct_sublayers(self) -> list[Layer]:
        return [leaf for _, v in self._tracked_attributes() for leaf in flatten(v) if isinstance(leaf, Layer)]

    def _own_variables(self) -> list[Variable]:
        out = list(self._weights.values())
        for _, v in self._tracked_attributes():
            out.extend(leaf for leaf in flatten(v) if isinstance(leaf, Variable))
        return out

    @property
    def variables(self) -> list[Variable]:
        """Every variable of this layer and its sub-layers, each once, in a stable order."""
        out: list[Variable] = []
        seen: set[int] = set()
        for layer in [self, *self.submodules]:
            for v in layer._own_variables():
                if id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
        return out

    weights = variables

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """``layer.trainable = False`` freezes this layer and all its sub-layers.

        The variables' own ``Variable.trainable`` flags follow, so optimizers (whose default
        ``var_list`` is the trainable variables the loss reaches) leave them alone too; setting it
        back to True restores each variable's own flag (a variable created non-trainable stays so).
        """
        for layer in [self, *self.submodules]:
            layer._trainable = bool(value)
            layer._sync_variable_flags()

    def _sync_variable_flags(self) -> None:
        """Sets ``Variable.trainable`` of this layer's own variables from ``self._trainable``."""
        for var in self._own_variables():
            saved = var.__dict__.get(_OWN_TRAINABLE)
            if not self._trainable:
                if saved is None:
                    setattr(var, _OWN_TRAINABLE, bool(var.trainable))
                var.trainable = False
            elif saved is not None:
                var.trainable = saved
                delattr(var, _OWN_TRAINABLE)

    @property
    def trainable_variables(self) -> list[Variable]:
        return [v for v in self.variables if self._is_trained(v)]

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self) -> list[Variable]:
        return [v for v in self.variables if not self._is_trained(v)]

    non_trainable_weights = non_trainable_variables

    def _is_trained(self, var: Variable) -> bool:
        if not var.trainable:
            return False
        for layer in [self, *self.submodules]:
            if any(v is var for v in layer._own_variables()):
                return layer._trainable
        return False

    def count_params(self) -> int:
        """The number of scalars in this layer's variables."""
        return int(sum(int(np.prod(v.shape)) for v in self.variables))

    # -- weights -----------------------------------------------------------------------------------
    def add_weight(
        self,
        name: str | None = None,
        shape: Any = None,
        initializer: Any = "glorot_uniform",
        trainable: bool = True,
        dtype: Any = None,
        regularizer: Any = None,
    ) -> Variable:
        """Creates a variable owned by this layer (usually from :meth:`build`).

        Args:
            name: the weight's name inside the layer ("kernel"); the variable is named
                ``"<layer path>/<name>"``. Optional, as in Keras: unnamed weights are ``variable``,
                ``variable_1``, ...
            shape: its fully known shape (a scalar when None, as in Keras).
            initializer: a name ("zeros", "ones", "random_normal", "glorot_uniform", ...), a config,
                or an initializer object from ``hubkit.initializers``.
            trainable: whether optimizers update it.
            dtype: its dtype (the layer's dtype by default).
            regularizer: a ``hubkit.regularizers`` object; its loss joins the graph's
                REGULARIZATION_LOSSES whenever the layer is called.

        Returns:
            The new :class:`~hubkit.Variable`.
        """
        if name is None:
            name = "variable"
            n = 1
            while name in self._weights:
                name, n = f"variable_{n}", n + 1
        if name in self._weights:
            raise GraphError(f"Layer {self.name!r} already has a weight named {name!r}.")
        if shape is None:
            shape = ()  # a scalar, as in Keras
        reg = None if regularizer is None else regularizers.get(regularizer)
        if self._variable_scope is not None:
            # tf.layers mode: the variable scope names, shares (reuse) and collects the variable,
            # and adds its regularization loss once, when it is created.
            var = get_variable(
                name, shape, dtype or self._dtype, initializers.get(initializer), trainable and self._trainable, reg
            )
        else:
            scopes = _call_state.scopes
            scope = "/".join(scopes if scopes[-1:] == [self.name] else [*scopes, self.name])
            var = Variable(
                name=f"{scope}/{name}",
                shape=shape,
                dtype=dtype or self._dtype,
                initializer=initializers.get(initializer),
                trainable=trainable,
            )
            if reg is not None:
                self._regularizers[name] = reg
        self._weights[name] = var
        if not self._trainable:
            self._sync_variable_flags()
        pending = self._deferred.pop(name, None)
        if pending is not None:  # a restored value waiting for this weight: checked like any other
            assign_value(var, pending)
        return var

    def in_variable_scope(self, name: str | None, default_name: str, reuse: Any = None) -> Layer:
        """Switches this (not yet called) layer to TF1 ``tf.layers`` naming and sharing; returns it.

        The first call opens ``variable_scope(name, default_name=default_name, reuse=reuse)`` in the
        inputs' graph (so unnamed layers are ``dense``, ``dense_1``, ... per graph, and names nest
        under the open variable scopes), and :meth:`add_weight` makes each weight with
        ``get_variable`` there: it joins GLOBAL_VARIABLES (and TRAINABLE_VARIABLES), its
        regularization loss joins REGULARIZATION_LOSSES once, and ``reuse`` shares existing
        variables. Later calls re-enter the same scope. ``hubkit.layers.dense`` and the other layer
        functions are such layers.

        Args:
            name: the variable scope's name, or None for a unique one from ``default_name``.
            default_name: the base of the unique name.
            reuse: as in ``variable_scope``: None, True or ``hubkit.AUTO_REUSE``.

        Raises:
            GraphError: the layer was already called.
        """
        if self._inbound or self.built:
            raise GraphError(f"Layer {self.name!r} was already called; in_variable_scope must come first.")
        self._scope_request = (name, default_name, reuse)
        return self

    @contextlib.contextmanager
    def _scope_for_call(self) -> Iterator[None]:
        """The variable scope of a ``tf.layers``-mode layer around a whole call; nothing otherwise."""
        if self._scope_request is None:
            yield
            return
        if self._variable_scope is None:
            name, default_name, reuse = self._scope_request
            with variable_scope(name, default_name=default_name, reuse=reuse) as scope:
                self._variable_scope = scope
                self._name = scope.name
                yield
        else:
            with variable_scope(self._variable_scope, reuse=True):
                yield

    # -- to override -------------------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Creates the layer's weights, given the static shape(s) of its first input."""

    def call(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """The computation on symbolic tensors; override it."""
        return inputs

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as plain data; ``from_config`` rebuilds an equal layer."""
        return {"name": self.name, "trainable": self.trainable, "dtype": self._dtype.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Builds a layer from :meth:`get_config`'s output.

        As in Keras, the config holds the constructor's keyword arguments. ``name``, ``trainable``
        and ``dtype`` (which :meth:`get_config` always returns) are applied after construction when
        a subclass's constructor does not take them.

        Raises:
            GraphError: ``config`` is not a dict, or the constructor refuses it (the class and the
                refused keys are named).
        """
        if not isinstance(config, dict):
            raise GraphError(f"{cls.__name__}.from_config needs a dict, got {type(config).__name__}.")
        kwargs = dict(config)
        accepted, takes_any = _init_parameters(cls)
        later = {}
        if not takes_any:
            later = {k: kwargs.pop(k) for k in _BASE_CONFIG_KEYS if k in kwargs and k not in accepted}
            refused = sorted(k for k in kwargs if k not in accepted)
            if refused:
                raise GraphError(
                    f"Cannot build layer class {cls.__name__!r} from its config: the constructor takes no "
                    f"arguments {refused}; it takes {sorted(accepted)}."
                )
        try:
            layer = cls(**kwargs)
        except UnexpectedArgumentsError as e:
            raise GraphError(
                f"Cannot build layer class {cls.__name__!r} from its config: the constructor refuses the keys {e.keys}."
            ) from None
        except TypeError as e:
            raise GraphError(f"Cannot build layer class {cls.__name__!r} from config keys {sorted(kwargs)}: {e}") from e
        if "name" in later:
            layer._name = str(later["name"])
        if "dtype" in later:
            layer._dtype = as_dtype(later["dtype"] or "float32")
            layer._dtype_from_input = False
        if "trainable" in later:
            layer.trainable = bool(later["trainable"])
        return layer

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The static output shape for ``input_shape``, found by building a throwaway graph."""
        graph = Graph()
        with graph.as_default():
            x = map_structure(lambda s: placeholder(self._dtype, s), input_shape)
            with suppress_recording():
                y = self(x)
        return map_structure(lambda t: t.shape, y)

    # -- calling -----------------------------------------------------------------------------------
    def __call__(self, inputs: Any, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        """Applies the layer: symbolic tensors build ops in their graph; arrays run now.

        Raises:
            GraphError: the input's shape contradicts the shape the weights were built for.
        """
        graph = _graph_of(inputs)
        if graph is None:
            return self._eager_call(inputs, args, training, kwargs)
        with graph.as_default(), self._scope_for_call():
            self._maybe_build(inputs)
            call_kwargs = dict(kwargs)
            if training is not None and self._call_takes("training"):
                call_kwargs["training"] = training
            # a tf.layers-mode layer's ops are in its variable scope's name scope already
            own_scope = graph.name_scope(self.name) if self._scope_request is None else contextlib.nullcontext()
            _call_state.scopes.append(self.name)
            try:
                with suppress_recording(), own_scope:
                    outputs = self.call(inputs, *args, **call_kwargs)
            finally:
                _call_state.scopes.pop()
            self._add_regularization_losses(graph)
        if _call_state.depth == 0 and not args:
            self._record(graph, inputs, {"training": training, **kwargs} if training is not None else kwargs, outputs)
        return outputs

    def _call_takes(self, arg: str) -> bool:
        cache = type(self).__dict__.get("_hk_call_args")
        if cache is None:
            params = inspect.signature(self.call).parameters
            takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            cache = (set(params), takes_all)
            type.__setattr__(type(self), "_hk_call_args", cache)
        return arg in cache[0] or cache[1]

    def _maybe_build(self, inputs: Any) -> None:
        shapes = [t.shape if isinstance(t, Tensor) else None for t in flatten(inputs)]
        if not self.built:
            if self._dtype_from_input:
                first = next((t for t in flatten(inputs) if isinstance(t, Tensor)), None)
                if first is not None and first.dtype.is_floating:
                    self._dtype = first.dtype
            _call_state.scopes.append(self.name)
            try:
                self.build(map_structure(lambda t: t.shape if isinstance(t, Tensor) else None, inputs))
            finally:
                _call_state.scopes.pop()
            self.built = True
            self._build_shapes = shapes
            if not self._trainable:  # weights created while frozen start frozen
                self._sync_variable_flags()
            return
        if self._build_shapes is not None and (self._weights or self.input_check_axes == "all"):
            self._check_input_shapes(shapes)

    def _check_input_shapes(self, shapes: list[tuple | None]) -> None:
        built = self._build_shapes or []
        for old, new in zip(built, shapes):
            if old is None or new is None:
                continue
            ok = len(old) == len(new)
            if ok and self.input_check_axes == "all":
                ok = merge_shapes(old[1:], new[1:]) is not False
            elif ok:
                ok = all(
                    old[a] is None or new[a] is None or old[a] == new[a]
                    for a in self.input_check_axes
                    if -len(old) <= a < len(old)
                )
            if not ok:
                raise GraphError(
                    f"Layer {self.name!r} was built for inputs of shape {format_shape(old)} and cannot be "
                    f"called on inputs of shape {format_shape(new)}."
                )

    def _add_regularization_losses(self, graph: Graph) -> None:
        if not self._regularizers:
            return
        done = recorded_graph_state(graph).regularized
        for name, reg in self._regularizers.items():
            var = self._weights[name]
            if id(var) in done:
                continue
            done.add(id(var))
            with graph.name_scope(f"{self.name}/{name}_regularizer"):
                graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, reg(var._as_graph_tensor(graph)))

    def _record(self, graph: Graph, inputs: Any, kwargs: dict[str, Any], outputs: Any) -> None:
        record = CallRecord(self, inputs, dict(kwargs), outputs)
        self._inbound.append(record)
        history = layer_history(graph)
        for i, t in enumerate(flatten(outputs)):
            if isinstance(t, Tensor):
                history[t] = (record, i)

    def _eager_call(self, inputs: Any, args: tuple, training: Any, kwargs: dict[str, Any]) -> Any:
        """Runs the layer on arrays through a small graph cached per input signature."""
        # A (nested) list of plain values, such as ["hello", "world"], is one input, as Module takes it.
        arrays = _as_array(inputs) if _is_plain_data(inputs) else map_structure(_as_array, inputs)
        leaves = flatten(arrays)
        key = (
            repr(map_structure(lambda a: (a.dtype.str, a.shape[1:] if a.ndim else ()), arrays)),
            training,
            repr(sorted(kwargs.items())),
            len(args),
        )
        entry = self._eager_cache.get(key)
        if entry is None:
            graph = Graph()
            with graph.as_default():
                feeds = map_structure(
                    lambda a: placeholder(a.dtype, (None, *a.shape[1:]) if a.ndim else ()), arrays
                )
                with suppress_recording():
                    outputs = self(feeds, *args, training=training, **kwargs)
                updates = graph.get_collection(GraphKeys.UPDATE_OPS) if training else []
            entry = (Session(graph), flatten(feeds), outputs, updates)
            self._eager_cache[key] = entry
        session, feeds, outputs, updates = entry
        result = session.run([outputs, updates], dict(zip(feeds, leaves)))
        return result[0]

    # -- functional-API views ----------------------------------------------------------------------
    @property
    def inbound_calls(self) -> list[CallRecord]:
        """The recorded calls of this layer on symbolic tensors, oldest first."""
        return list(self._inbound)

    def _single_call(self, what: str) -> CallRecord:
        if not self._inbound:
            raise GraphError(f"Layer {self.name!r} has never been called on symbolic tensors, so it has no {what}.")
        if len(self._inbound) > 1:
            raise GraphError(
                f"Layer {self.name!r} was called {len(self._inbound)} times, so its {what} is ambiguous; use "
                f"layer.inbound_calls[i].{what}s instead."
            )
        return self._inbound[0]

    @property
    def input(self) -> Any:
        return self._single_call("input").inputs

    @property
    def output(self) -> Any:
        return self._single_call("output").outputs

    def __repr__(self) -> str:
        return f"<hubkit.layers.{type(self).__name__} {self.name!r}>"


_PLAIN_SCALARS = (str, bytes, int, float, bool, np.generic)


def _is_plain_data(value: Any) -> bool:
    """A non-empty (nested) list or tuple of Python or NumPy scalars: one array, not a list of inputs."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return all(isinstance(v, _PLAIN_SCALARS) or _is_plain_data(v) for v in value)


def _as_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)  # strings are object arrays, as hubkit string tensors hold them
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)  # Python floats become float32, as constants do
    return arr


def _leaves(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    """``(path, leaf)`` for a tracked attribute: ``attr``, ``attr/0``, ``attr/key``..."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(f"{name}/{escape_name(str(k))}", v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _leaves(f"{name}/{i}", v)
    elif isinstance(value, (Variable, Layer)) or getattr(value, "_checkpoint_children", None) is not None:
        yield name, value


# -- the class registry used by from_config ---------------------------------------------------------
_LAYER_CLASSES: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Makes ``cls`` known to ``Model.from_config`` by its class name (built-in layers use this)."""
    _LAYER_CLASSES[cls.__name__] = cls
    return cls


def get_layer_class(name: str, custom_objects: dict[str, Any] | None = None) -> type:
    """The layer class called ``name``, looking in ``custom_objects`` first."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]

    try:
        return _LAYER_CLASSES[name]
    except KeyError:
        known = sorted({*_LAYER_CLASSES, *(custom_objects or {})})
        raise GraphError(
            f"Unknown layer class {name!r}; pass it in custom_objects. Known classes: {known}."
        ) from None
