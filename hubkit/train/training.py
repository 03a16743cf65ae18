"""``compile``, ``fit``, ``evaluate`` and ``predict`` for functional models.

``fit`` builds one training graph (cached until the model is compiled again or its set of
trainable variables changes): the model replayed with ``training=True`` on fresh placeholders, the
losses and metrics, regularization losses, ``optimizer.minimize`` and the graph's UPDATE_OPS (batch
norm statistics). Each batch is one run of a compiled plan. Inference (``predict``, ``evaluate``,
validation) uses a second graph built with ``training=False``. Both graphs read the model's
variables, so there is one set of weights.

Shuffling is a function of ``(seed, epoch)`` and the model counts finished epochs in a variable that
checkpoints save, so training resumed from a checkpoint sees the same data order as uninterrupted
training.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hubkit.errors import FeedError, GraphError
from hubkit.graph import Graph, GraphKeys, Tensor, format_shape, placeholder
from hubkit.layers.recording import suppress_recording
from hubkit.ops import api
from hubkit.runtime import Session
from hubkit.runtime.executor import convert_feed
from hubkit.train.lookups import LOSSES, SPARSE_LOSSES, get_loss, get_metric, get_optimizer

if TYPE_CHECKING:
    from hubkit.runtime import Variable

__all__ = ["History", "TrainingMixin", "get_loss", "get_metric"]


class History(dict):
    """``fit``'s result: ``{"loss": [per epoch], "accuracy": [...], "val_loss": [...]}``.

    ``history.history`` is the dict itself, as in Keras.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []  # the epoch numbers run

    @property
    def history(self) -> History:
        return self


# -- the per-output plan --------------------------------------------------------------------------
class _Heads:
    """What compile asked for, per output: loss function, weight, and metrics."""

    def __init__(self, names: list[str], loss: Any, metrics: Any, loss_weights: Any) -> None:
        self.names = names
        self.losses = self._per_output(loss, "loss")
        self.weights = [float(w) for w in self._per_output(loss_weights, "loss_weights", default=1.0)]
        if metrics is None:
            metrics = []
        if isinstance(metrics, dict):
            per = self._per_output(metrics, "metrics", default=[])
        else:
            per = [[metrics] if isinstance(metrics, str) or callable(metrics) else list(metrics)] * len(names)
        self.metrics = [[get_metric(m) for m in (ms if isinstance(ms, (list, tuple)) else [ms])] for ms in per]
        self.fns = [None if item is None else get_loss(item) for item in self.losses]
        if all(f is None for f in self.fns):
            raise GraphError(
                f"compile() needs a loss for at least one output of {names}: a callable or one of {sorted(LOSSES)}."
            )

    @property
    def target_names(self) -> list[str]:
        """The outputs with a loss, which are the ones that take targets."""
        return [n for n, f in zip(self.names, self.fns) if f is not None]

    def _per_output(self, value: Any, what: str, default: Any = None) -> list[Any]:
        n = len(self.names)
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(self.names))
            if unknown:
                raise GraphError(f"compile(): {what} names unknown outputs {unknown}; outputs are {sorted(self.names)}.")
            return [value.get(k, default) for k in self.names]
        if isinstance(value, (list, tuple)) and what != "metrics":
            if len(value) != n:
                raise GraphError(f"compile(): {what} has {len(value)} entries for {n} outputs {self.names}.")
            return list(value)
        if value is None:
            return [default] * n
        return [value] * n

    def kind(self, i: int) -> str:
        """``"sparse"`` (class ids), ``"dense"`` (targets shaped like the output) or ``"custom"`` (a callable)."""
        loss = self.losses[i]
        if not isinstance(loss, str):
            return "custom"
        return "sparse" if loss in SPARSE_LOSSES else "dense"


class _Program:
    """One compiled graph: feeds, fetches and the plan running them."""

    def __init__(self, graph: Graph, feeds: list[Tensor], fetches: list[Any], names: list[str]) -> None:
        self.graph = graph
        self.feeds = feeds
        self.names = names  # of the fetched scalars after the first fetch
        self.plan = Session(graph).plan(fetches, feeds)


class TrainingMixin:
    """compile / fit / evaluate / predict for :class:`~hubkit.Model` (mixed into it)."""

    if TYPE_CHECKING:  # what the methods below use of Model and its Layer base
        _inputs: list[Tensor]
        _outputs: list[Tensor]
        _input_structure: Any
        _output_structure: Any
        _fit_epoch: Variable

        @property
        def name(self) -> str: ...
        @property
        def inputs(self) -> list[Tensor]: ...
        @property
        def input_names(self) -> list[str]: ...
        @property
        def output_names(self) -> list[str]: ...
        @property
        def trainable_variables(self) -> list[Variable]: ...
        def __call__(self, inputs: Any, *args: Any, training: Any = None, **kwargs: Any) -> Any: ...

    def _init_training(self) -> None:
        self.optimizer: Any = None
        self._heads: _Heads | None = None
        self._programs: dict[Any, _Program] = {}

    # -- compile -----------------------------------------------------------------------------------
    def compile(self, optimizer: Any = "adam", loss: Any = None, metrics: Any = None, loss_weights: Any = None) -> None:
        """Configures training.

        Args:
            optimizer: an optimizer (``hubkit.train.Adam(1e-3)``) or a name ("adam", "sgd", ...).
            loss: a name ("mse", "sparse_categorical_crossentropy", "sparse_softmax_cross_entropy"
                for logits, ...), a callable ``fn(labels, predictions)``, or a dict (by output name) or
                list (by output position) of them.
            metrics: a list of names ("accuracy", "mae", ...) or callables for every output, or a dict
                of lists by output name.
            loss_weights: a weight per output (dict or list); the total loss is the weighted sum.

        Raises:
            GraphError: an unknown name, or a dict naming an output the model does not have.
        """
        self.optimizer = get_optimizer(optimizer)
        self._heads = _Heads(self.output_names, loss, metrics, loss_weights)
        self._programs = {}

    # -- data ---------------------------------------------------------------------------------------
    def _arrays(self, data: Any, names: list[str], tensors: Sequence[Tensor | None], what: str) -> list[np.ndarray]:
        if isinstance(data, dict):
            missing = sorted(set(names) - set(data))
            extra = sorted(set(data) - set(names))
            if missing or extra:
                raise FeedError(f"Model {self.name!r} {what} are {sorted(names)}; missing {missing}, unexpected {extra}.")
            items = [data[n] for n in names]
        elif isinstance(data, (list, tuple)) and len(names) > 1:
            if len(data) != len(names):
                raise FeedError(f"Model {self.name!r} has {len(names)} {what} {names}; got {len(data)} arrays.")
            items = list(data)
        else:
            if len(names) != 1:
                raise FeedError(f"Model {self.name!r} has {len(names)} {what} {names}; pass a list or a dict.")
            items = [data]
        out = []
        for name, t, item in zip(names, tensors, items):
            if item is None:
                raise FeedError(f"Model {self.name!r} {what} {name!r}: got None instead of an array.")
            arr = np.asarray(item)
            if arr.ndim == 0:
                raise FeedError(
                    f"Model {self.name!r} {what} {name!r}: expected an array with one row per example, got the "
                    f"scalar {item!r}."
                )
            if t is not None:
                arr = convert_feed(t, arr, what=f"Model {what[:-1]}")
            out.append(arr)
        n = {len(a) for a in out}
        if len(n) > 1:
            raise FeedError(f"Model {self.name!r} {what} have different numbers of examples: {sorted(n)}.")
        return out

    def _xy(self, x: Any, y: Any, what: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Inputs and targets, checked to have one target row per input row."""
        xs = self._x(x)
        if y is None:
            names = self._require_compiled().target_names
            raise FeedError(f"{what}() needs targets y for the model's outputs {names}, because their losses compare against them.")
        ys = self._y(y)
        if xs and ys and len(xs[0]) != len(ys[0]):
            raise FeedError(
                f"{what}(): the inputs have {len(xs[0])} examples but the targets have {len(ys[0])}; they must match."
            )
        return xs, ys

    def _x(self, x: Any) -> list[np.ndarray]:
        return self._arrays(x, self.input_names, self.inputs, "inputs")

    def _y(self, y: Any) -> list[np.ndarray]:
        heads = self._require_compiled()
        names = heads.target_names
        if isinstance(y, dict):
            y = {k: v for k, v in y.items() if k in names or k not in heads.names}
        arrays = self._arrays(y, names, [None] * len(names), "targets")
        targets = iter(arrays)
        return [self._target(i, next(targets)) for i, f in enumerate(heads.fns) if f is not None]

    def _target(self, i: int, arr: np.ndarray) -> np.ndarray:
        """Targets of output ``i`` shaped and typed for its loss, as Keras adapts them.

        Sparse losses take integer class ids shaped like the output without its last axis; the
        other named losses take targets shaped like the output. A trailing axis of size 1 is added
        or dropped to get there; any other difference is refused rather than broadcast.
        """
        heads = self._require_compiled()
        name, output = heads.names[i], self._outputs[i]
        if arr.dtype.kind not in "biuf":
            raise FeedError(f"Model {self.name!r} output {name!r}: targets must be numbers, got dtype {arr.dtype}.")
        shape = output.shape
        kind = heads.kind(i)
        if shape is None:
            return arr.astype(np.int64 if kind == "sparse" else output.dtype.np_dtype, copy=False)
        want = shape[:-1] if kind == "sparse" else shape
        if arr.ndim == len(want) - 1 and want and want[-1] == 1:
            arr = arr[..., np.newaxis]
        elif arr.ndim == len(want) + 1 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        fits = arr.ndim == len(want) and all(w is None or w == a for w, a in zip(want, arr.shape))
        if kind == "custom":  # the loss function decides; integer ids of another rank stay integers
            if not fits and arr.dtype.kind in "iub":
                return arr.astype(np.int64, copy=False)
            return arr.astype(output.dtype.np_dtype, copy=False)
        if not fits:
            hint = f" (sparse class ids are shaped like the output without its last axis: {format_shape(want)})"
            raise FeedError(
                f"Model {self.name!r} output {name!r} has shape {format_shape(shape)}; the targets for it have "
                f"shape {format_shape(arr.shape)}{hint if kind == 'sparse' else ''}."
            )
        if kind == "sparse":
            return _class_ids(self.name, name, arr, shape[-1])
        return arr.astype(output.dtype.np_dtype, copy=False)

    def _require_compiled(self) -> _Heads:
        if self._heads is None:
            raise GraphError(f"Model {self.name!r} must be compiled (model.compile(optimizer, loss)) before training.")
        return self._heads

    # -- graphs -----------------------------------------------------------------------------------
    def _replay(self, training: bool) -> tuple[Graph, list[Tensor], list[Tensor]]:
        graph = Graph()
        with graph.as_default(), suppress_recording():
            feeds = [placeholder(t.dtype, t.shape, name=n) for t, n in zip(self._inputs, self.input_names)]
            structure = dict(zip(self.input_names, feeds)) if isinstance(self._input_structure, dict) else feeds
            outs = self(structure if len(feeds) > 1 or isinstance(structure, dict) else feeds[0], training=training)
        outputs = [outs[k] for k in self.output_names] if isinstance(outs, dict) else _as_list(outs)
        return graph, feeds, outputs

    def _loss_terms(
        self, graph: Graph, outputs: list[Tensor], y_specs: list[tuple[Any, tuple]]
    ) -> tuple[list[Tensor], Tensor, list[Tensor], list[str]]:
        heads = self._require_compiled()
        labels: list[Tensor] = []
        losses: list[Tensor] = []
        metrics: list[Tensor] = []
        names: list[str] = []
        multi = len(heads.target_names) > 1 or len(outputs) > 1
        with graph.as_default():
            k = 0
            for i, fn in enumerate(heads.fns):
                out_name = heads.names[i]
                if fn is None:
                    continue
                dtype, shape = y_specs[k]
                k += 1
                label = placeholder(dtype, shape, name=f"{out_name}_target")
                labels.append(label)
                with graph.name_scope(f"{out_name}_loss"):
                    loss = api.cast(fn(label, outputs[i]), "float32")
                losses.append(loss)
                for metric_name, mfn in heads.metrics[i]:
                    with graph.name_scope(f"{out_name}_{metric_name}"):
                        metrics.append(api.cast(mfn(label, outputs[i]), "float32"))
                    names.append(f"{out_name}_{metric_name}" if multi else metric_name)
            weighted = [loss * w if w != 1.0 else loss for loss, w in zip(losses, heads.weights)]
            regs = graph.get_collection(GraphKeys.REGULARIZATION_LOSSES)
            terms = weighted + [api.cast(r, "float32") for r in regs]
            total = terms[0] if len(terms) == 1 else api.add_n(terms)
        loss_names = [f"{n}_loss" for n in heads.target_names] if multi else []
        per_output = losses if multi else []
        return labels, total, per_output + metrics, loss_names + names

    def _train_program(self, y_arrays: list[np.ndarray]) -> _Program:
        from hubkit.train.checkpoint import apply_deferred_slots

        var_list = self.trainable_variables
        specs = [(a.dtype, (None, *a.shape[1:])) for a in y_arrays]
        key = ("train", tuple(id(v) for v in var_list), repr(specs))
        program = self._programs.get(key)
        if program is not None:
            return program
        if not var_list:
            raise GraphError(f"Model {self.name!r} has no trainable variables; there is nothing to fit.")
        graph, feeds, outputs = self._replay(training=True)
        labels, total, scalars, names = self._loss_terms(graph, outputs, specs)
        with graph.as_default():
            train_op = self.optimizer.minimize(total, var_list=var_list)
            updates = graph.get_collection(GraphKeys.UPDATE_OPS)
            step = api.group(train_op, *updates, name="train_step") if updates else train_op
        apply_deferred_slots(self.optimizer)
        program = self._programs[key] = _Program(graph, feeds + labels, [step, total, *scalars], names)
        return program

    def _eval_program(self, y_arrays: list[np.ndarray]) -> _Program:
        specs = [(a.dtype, (None, *a.shape[1:])) for a in y_arrays]
        key = ("eval", repr(specs))
        program = self._programs.get(key)
        if program is None:
            graph, feeds, outputs = self._replay(training=False)
            labels, total, scalars, names = self._loss_terms(graph, outputs, specs)
            program = self._programs[key] = _Program(graph, feeds + labels, [total, total, *scalars], names)
        return program

    def _predict_program(self) -> _Program:
        program = self._programs.get("predict")
        if program is None:
            graph, feeds, outputs = self._replay(training=False)
            program = self._programs["predict"] = _Program(graph, feeds, outputs, [])
        return program

    # -- fit ----------------------------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        batch_size: int = 32,
        epochs: int = 1,
        verbose: int = 1,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool = True,
        initial_epoch: int | None = None,
        seed: int = 0,
    ) -> History:
        """Trains for ``epochs`` passes over the data.

        Args:
            x: inputs: an array (one input), a list (by position) or a dict (by input name).
            y: targets, likewise by output.
            batch_size: examples per step (the last batch of an epoch may be smaller).
            epochs: how many epochs to run.
            verbose: 1 prints one progress line per epoch, 0 is silent.
            validation_split: fraction of the examples, taken from the end before shuffling, held out
                to compute ``val_*`` figures after each epoch.
            validation_data: ``(x_val, y_val)`` instead of a split.
            shuffle: shuffle the training examples each epoch; the order is a function of ``seed``
                and the epoch number.
            initial_epoch: number of the first epoch; by default the count of epochs this model has
                finished (restored by checkpoints), so resumed training continues the data order.
            seed: seed of the shuffling.

        Returns:
            A :class:`History`: ``{"loss": [...], "<metric>": [...], "val_loss": [...], ...}``.

        Raises:
            GraphError: the model is not compiled.
            FeedError: the data does not fit the inputs or targets.
        """
        self._require_compiled()
        _check_count(batch_size, "batch_size")
        _check_count(epochs, "epochs")
        xs, ys = self._xy(x, y, "fit")
        n = len(xs[0]) if xs else 0
        if validation_data is None and validation_split:
            if not 0.0 < validation_split < 1.0:
                raise FeedError(f"validation_split must be in (0, 1), got {validation_split!r}.")
            cut = int(n * (1.0 - validation_split))
            val_arrays = ([a[cut:] for a in xs], [a[cut:] for a in ys])
            xs, ys, n = [a[:cut] for a in xs], [a[:cut] for a in ys], cut
        elif validation_data is not None:
            if not isinstance(validation_data, (list, tuple)) or len(validation_data) != 2:
                raise FeedError("validation_data must be a pair (x_val, y_val).")
            val_arrays = self._xy(validation_data[0], validation_data[1], "fit (validation_data)")
        else:
            val_arrays = None
        if n == 0:
            raise FeedError("fit() needs at least one training example.")
        program = self._train_program(ys)
        start = int(self._fit_epoch.value) if initial_epoch is None else int(initial_epoch)
        history = History()
        names = ["loss", *program.names]
        arrays = xs + ys
        for epoch in range(start, start + epochs):
            began = time.perf_counter()
            if shuffle:
                order = np.random.default_rng([int(seed), epoch]).permutation(n)
                epoch_arrays = [a[order] for a in arrays]
            else:
                epoch_arrays = arrays
            logs = dict(zip(names, _mean_over_batches(program, epoch_arrays, batch_size)))
            if val_arrays is not None:
                val = self._evaluate_arrays(val_arrays[0], val_arrays[1], batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            self._fit_epoch.assign(np.int64(epoch + 1))
            for k, v in logs.items():
                history.setdefault(k, []).append(v)
            history.epoch.append(epoch)
            if verbose:
                figures = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
                steps = -(-n // batch_size)
                elapsed = time.perf_counter() - began
                print(f"Epoch {epoch + 1}/{start + epochs} - {steps} steps - {elapsed:.2f}s - {figures}", file=sys.stdout)
        return history

    # -- evaluate / predict -------------------------------------------------------------------------
    def _evaluate_arrays(self, xs: list[np.ndarray], ys: list[np.ndarray], batch_size: int) -> dict[str, float]:
        program = self._eval_program(ys)
        return dict(zip(["loss", *program.names], _mean_over_batches(program, xs + ys, batch_size)))

    def evaluate(self, x: Any, y: Any, batch_size: int = 32, verbose: int = 0) -> dict[str, float]:
        """The loss and metrics on ``(x, y)`` in inference mode, averaged over the examples.

        Returns:
            ``{"loss": ..., "<metric>": ...}``.
        """
        self._require_compiled()
        _check_count(batch_size, "batch_size")
        xs, ys = self._xy(x, y, "evaluate")
        result = self._evaluate_arrays(xs, ys, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        return result

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> Any:
        """The model's outputs for ``x`` in inference mode, computed in batches.

        Returns:
            An array for a single output, else a list (or dict, for dict outputs) of arrays.
        """
        _check_count(batch_size, "batch_size")
        xs = self._x(x)
        program = self._predict_program()
        n = len(xs[0])
        parts: list[list[np.ndarray]] = [[] for _ in self._outputs]
        for b in range(0, max(n, 1), batch_size):
            for i, out in enumerate(program.plan.run([a[b : b + batch_size] for a in xs])):
                parts[i].append(out)
        results = [np.concatenate(p, axis=0) if len(p) > 1 else p[0] for p in parts]
        if isinstance(self._output_structure, dict):
            return dict(zip(self.output_names, results))
        if isinstance(self._output_structure, (list, tuple)):
            return results
        return results[0]


def _mean_over_batches(program: _Program, arrays: list[np.ndarray], batch_size: int) -> list[float]:
    """Runs ``program`` batch by batch; the per-example mean of every fetch after the first.

    The first fetch is the train step (or a repeat of the loss, for evaluation); the others are
    batch means, weighted here by the batch's size so a short last batch counts for what it holds.
    """
    n = len(arrays[0])
    run = program.plan.run
    sums = np.zeros(len(program.names) + 1)
    for b in range(0, n, batch_size):
        out = run([a[b : b + batch_size] for a in arrays])
        sums += np.array(out[1:], dtype=np.float64) * min(batch_size, n - b)
    return (sums / max(n, 1)).tolist()


def _check_count(value: Any, what: str) -> None:
    """Refuses anything but a positive integer (``batch_size``, ``epochs``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FeedError(f"{what} must be a positive integer, got {value!r}.")


def _class_ids(model: str, output: str, arr: np.ndarray, classes: int | None) -> np.ndarray:
    """``arr`` as int64 class ids, refusing fractions, NaN and ids outside ``[0, classes)``."""
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise FeedError(
                f"Model {model!r} output {output!r}: sparse targets must be integer class ids; got "
                f"{float(arr[bad].ravel()[0]):g} ({int(bad.sum())} of {arr.size} targets are not)."
            )
    ids = arr.astype(np.int64, copy=False)
    if ids.size and classes is not None and (ids.min() < 0 or ids.max() >= classes):
        raise FeedError(
            f"Model {model!r} output {output!r}: class ids must be in [0, {classes}); got ids from "
            f"{int(ids.min())} to {int(ids.max())}."
        )
    return ids


def _as_list(structure: Any) -> list[Any]:
    return list(structure) if isinstance(structure, (list, tuple)) else [structure]
