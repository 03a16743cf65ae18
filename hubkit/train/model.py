"""``Model``: a functional model over recorded layer calls; itself a layer, with training methods."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Tensor
from hubkit.layers.base import Layer, get_layer_class, register_layer, to_snake_case
from hubkit.layers.recording import flatten, map_structure
from hubkit.runtime import Variable
from hubkit.runtime.tracking import escape_name
from hubkit.train.functional import InputLayer, input_layer_of, trace
from hubkit.train.training import TrainingMixin

__all__ = ["Model"]


def _structure_is_valid(structure: Any) -> bool:
    return all(isinstance(t, Tensor) for t in flatten(structure))


@register_layer
class Model(TrainingMixin, Layer):
    """A model defined by its inputs and outputs, Keras's functional API on hubkit graphs.

    The layers called between the inputs and the outputs are found from the recorded calls. A
    model is a layer: calling it on new tensors replays those calls (sharing the weights), so
    models nest and form ensembles.

    Args:
        inputs: a tensor from :func:`hubkit.Input`, or a list or dict of them.
        outputs: a tensor computed from the inputs by layers, or a list or dict of them.
        name: the model's name.

    >>> import numpy as np, hubkit as hk
    >>> with hk.Graph().as_default():
    ...     x = hk.Input((3,), name="x")
    ...     y = hk.layers.Dense(2, kernel_initializer="ones", name="out")(x)
    ...     model = hk.Model(x, y, name="tiny")
    >>> [layer.name for layer in model.layers]
    ['x', 'out']
    >>> model.predict(np.ones((2, 3)), verbose=0)
    array([[3., 3.],
           [3., 3.]], dtype=float32)
    """

    input_check_axes = "all"  # type: ignore[assignment]

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        if not _structure_is_valid(inputs) or not _structure_is_valid(outputs):
            raise GraphError("Model inputs and outputs must be tensors, or lists or dicts of tensors.")
        self._input_structure = inputs
        self._output_structure = outputs
        self._inputs = flatten(inputs)
        self._outputs = flatten(outputs)
        if len(set(self._inputs)) != len(self._inputs):
            raise GraphError(f"Model {self.name!r} lists the same input twice.")
        self._input_layers = [input_layer_of(t) for t in self._inputs]
        self._records = trace(self._inputs, self._outputs)
        layers: list[Layer] = list(self._input_layers)
        for record in self._records:
            if all(record.layer is not lay for lay in layers):
                layers.append(record.layer)
        self._layers = layers
        self.built = True
        self._build_shapes = [t.shape for t in self._inputs]
        self._fit_epoch = Variable(np.int64(0), name=f"{self.name}/fit_epoch", trainable=False)
        self._init_training()

    # -- structure -----------------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The model's layers: its input layers, then the others in call order."""
        return list(self._layers)

    def get_layer(self, name: str) -> Layer:
        """The layer called ``name``.

        Raises:
            GraphError: no such layer; the message lists the layer names.
        """
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise GraphError(f"Model {self.name!r} has no layer {name!r}; it has {sorted(la.name for la in self._layers)}.")

    @property
    def inputs(self) -> list[Tensor]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[Tensor]:
        return list(self._outputs)

    @property
    def input_names(self) -> list[str]:
        if isinstance(self._input_structure, dict):
            return list(self._input_structure)
        return [layer.name for layer in self._input_layers]

    @property
    def output_names(self) -> list[str]:
        if isinstance(self._output_structure, dict):
            return list(self._output_structure)
        names: list[str] = []
        for t in self._outputs:
            record = next((r for r in reversed(self._records) if any(o is t for o in r.flat_outputs)), None)
            base = record.layer.name if record is not None else self._input_layers[self._inputs.index(t)].name
            name, i = base, 1
            while name in names:
                name, i = f"{base}_{i}", i + 1
            names.append(name)
        return names

    def _direct_sublayers(self) -> list[Layer]:
        return [la for la in self._layers if not isinstance(la, InputLayer)]

    def _checkpoint_children(self) -> list[tuple[str, Any]]:
        """Layers by snake-case class name, numbered within the model ("dense", "dense_1"), as Keras 3 does."""
        out: list[tuple[str, Any]] = []
        counts: dict[str, int] = {}
        for layer in self._direct_sublayers():
            base = to_snake_case(type(layer).__name__)
            n = counts.get(base, 0)
            counts[base] = n + 1
            out.append((escape_name(base if n == 0 else f"{base}_{n}"), layer))
        if self.optimizer is not None:
            out.append(("optimizer", self.optimizer))
        out.append(("fit_epoch", self._fit_epoch))
        return out

    # -- calling -------------------------------------------------------------------------------------
    def _match_inputs(self, inputs: Any) -> list[Any]:
        """The flat list of new inputs, in the order of ``self.inputs``."""
        names = self.input_names
        if isinstance(inputs, dict):
            missing = sorted(set(names) - set(inputs))
            extra = sorted(set(inputs) - set(names))
            if missing or extra:
                raise GraphError(
                    f"Model {self.name!r} takes inputs {sorted(names)}; missing {missing}, unexpected {extra}."
                )
            return [inputs[n] for n in names]
        flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(flat) != len(names):
            raise GraphError(f"Model {self.name!r} takes {len(names)} inputs {names}, got {len(flat)}.")
        return flat

    def call(self, inputs: Any, training: Any = None) -> Any:
        mapping: dict[Tensor, Any] = dict(zip(self._inputs, self._match_inputs(inputs)))
        for record in self._records:
            args = map_structure(lambda t: mapping[t], record.inputs)
            kwargs = dict(record.kwargs)
            if training is not None and "training" not in kwargs:
                kwargs["training"] = training
            out = record.layer(args, **kwargs)
            for old, new in zip(record.flat_outputs, flatten(out)):
                mapping[old] = new
        return map_structure(lambda t: mapping[t], self._output_structure)

    def __call__(self, inputs: Any, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        if isinstance(inputs, dict):  # validated, and in the order the model's inputs were declared
            flat = self._match_inputs(inputs)
            is_dict = isinstance(self._input_structure, dict)
            inputs = dict(zip(self.input_names, flat)) if is_dict else flat
        elif isinstance(inputs, tuple):
            inputs = list(inputs)
        return super().__call__(inputs, *args, training=training, **kwargs)

    # -- config --------------------------------------------------------------------------------------
    def _call_index(self) -> dict[int, tuple[str, int]]:
        """``id(record) -> (layer name, index of that call within this model)``."""
        index: dict[int, tuple[str, int]] = {}
        counts: dict[int, int] = {}
        for layer in self._input_layers:
            index[id(layer._inbound[0])] = (layer.name, 0)
        for record in self._records:
            n = counts.get(id(record.layer), 0)
            counts[id(record.layer)] = n + 1
            index[id(record)] = (record.layer.name, n)
        return index

    def _refs(self) -> tuple[dict[Tensor, list[Any]], dict[int, tuple[str, int]]]:
        """``tensor -> [layer name, call index, tensor index]`` for every tensor of the model."""
        index = self._call_index()
        refs: dict[Tensor, list[Any]] = {}
        for layer, t in zip(self._input_layers, self._inputs):
            refs[t] = [layer.name, 0, 0]
        for record in self._records:
            name, n = index[id(record)]
            for i, t in enumerate(record.flat_outputs):
                refs.setdefault(t, [name, n, i])
        return refs, index

    def get_config(self) -> dict[str, Any]:
        """The architecture as plain data: layers with their configs, the calls between them, inputs, outputs."""
        refs, _index = self._refs()
        names = [la.name for la in self._layers]
        if len(set(names)) != len(names):
            raise GraphError(f"Model {self.name!r} has several layers with one name; get_config needs unique names.")
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [{"class_name": type(la).__name__, "config": la.get_config()} for la in self._layers],
            "calls": [
                {
                    "layer": record.layer.name,
                    "inputs": _jsonable(map_structure(lambda t: refs[t], record.inputs)),
                    "kwargs": {k: v for k, v in record.kwargs.items() if v is None or isinstance(v, (bool, int, float, str))},
                }
                for record in self._records
            ],
            "inputs": _jsonable(map_structure(lambda t: refs[t], self._input_structure)),
            "outputs": _jsonable(map_structure(lambda t: refs[t], self._output_structure)),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Model:
        """Rebuilds a model with the same architecture (and fresh weights) in the default graph.

        Args:
            config: the output of :meth:`get_config`.
            custom_objects: ``{class name: class}`` for layer classes hubkit does not know.

        Raises:
            GraphError: a layer class is unknown or the config is inconsistent.
        """
        _check_config(config)
        layers: dict[str, Layer] = {}
        produced: dict[tuple[str, int], list[Any]] = {}
        for item in config["layers"]:
            layer_cls = get_layer_class(item["class_name"], custom_objects)
            if not (isinstance(layer_cls, type) and issubclass(layer_cls, Layer)):
                raise GraphError(f"custom_objects[{item['class_name']!r}] must be a Layer subclass, got {layer_cls!r}.")
            layer: Layer
            if issubclass(layer_cls, Model):
                layer = layer_cls.from_config(item["config"], custom_objects)
            else:
                layer = layer_cls.from_config(dict(item["config"]))
            layers[layer.name] = layer
            if isinstance(layer, InputLayer):
                produced[(layer.name, 0)] = [layer._inbound[0].outputs]
        counts: dict[str, int] = {}

        def tensor(ref: Any) -> Any:
            name, n, i = ref
            try:
                return produced[(name, int(n))][int(i)]
            except (KeyError, IndexError):
                raise GraphError(f"Model config refers to an unknown output {ref!r}.") from None

        for call in config["calls"]:
            name = call["layer"]
            if name not in layers:
                raise GraphError(f"Model config calls unknown layer {name!r}; layers are {sorted(layers)}.")
            args = _map_refs(tensor, call["inputs"])
            out = layers[name](args, **call.get("kwargs", {}))
            n = counts.get(name, 0)
            counts[name] = n + 1
            produced[(name, n)] = flatten(out)
        return cls(
            _map_refs(tensor, config["inputs"]),
            _map_refs(tensor, config["outputs"]),
            name=config.get("name"),
            trainable=config.get("trainable", True),
        )

    def summary(self, line_length: int | None = None, print_fn: Any = None) -> None:
        """Prints a table of the layers (name and type, output shape, parameters, inputs) and totals."""
        from hubkit.train.summary import print_summary

        print_summary(self, line_length=line_length, print_fn=print_fn)


_CONFIG_KEYS = ("calls", "inputs", "layers", "outputs")


def _check_config(config: Any) -> None:
    """Refuses a model config whose structure is not :meth:`Model.get_config`'s."""
    if not isinstance(config, dict):
        raise GraphError(f"Model.from_config needs a dict from Model.get_config(), got {type(config).__name__}.")
    missing = [k for k in _CONFIG_KEYS if k not in config]
    if missing:
        raise GraphError(f"Model config lacks the keys {missing}; a model config has {list(_CONFIG_KEYS)}.")
    for key in ("layers", "calls"):
        if not isinstance(config[key], list) or not all(isinstance(item, dict) for item in config[key]):
            raise GraphError(f"Model config {key!r} must be a list of dicts, got {config[key]!r}.")
    for i, item in enumerate(config["layers"]):
        if not isinstance(item.get("class_name"), str) or not isinstance(item.get("config"), dict):
            raise GraphError(
                f"Model config layer {i} must be {{'class_name': str, 'config': dict}}, got {sorted(item)} "
                f"({item!r})."
            )
    for i, call in enumerate(config["calls"]):
        if not isinstance(call.get("layer"), str) or "inputs" not in call or not isinstance(call.get("kwargs", {}), dict):
            raise GraphError(
                f"Model config call {i} must be {{'layer': str, 'inputs': ..., 'kwargs': dict}}, got {call!r}."
            )


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _jsonable(structure: Any) -> Any:
    if isinstance(structure, dict):
        return {k: _jsonable(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)) and not _is_ref(structure):
        return [_jsonable(v) for v in structure]
    return list(structure) if isinstance(structure, tuple) else structure


def _map_refs(fn: Any, structure: Any) -> Any:
    if _is_ref(structure):
        return fn(structure)
    if isinstance(structure, dict):
        return {k: _map_refs(fn, v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_map_refs(fn, v) for v in structure]
    raise GraphError(f"Model config has a malformed tensor reference {structure!r}.")
