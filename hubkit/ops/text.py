"""Op family: text. String ops, whitespace tokenization and vocabulary lookup from asset files.

String tensors hold Python ``str`` objects in NumPy object arrays. Tokenization produces a ragged
representation: a flat ``values`` tensor, an int64 ``row_ids`` tensor naming the sentence of each
value, and an int64 scalar ``num_rows`` (so trailing empty sentences are not lost).

Vocabulary ops take the vocabulary file as a string scalar input: an ``AssetPath`` tensor
(``hubkit.add_asset``), so the file travels with an exported module, or a placeholder fed at run
time; any other producer (a constant path) is refused when the graph is built or loaded, as it
would make a published module read files of the consumer's machine. The table is read once per
compiled plan and shared by the plans of a graph (see :mod:`hubkit.ops._vocab` for the file format
and the stable out-of-vocabulary hash). None of these ops is differentiable.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Node, int64, string
from hubkit.graph.shapes import format_shape
from hubkit.ops import _vocab
from hubkit.ops.registry import describe, infer_error, register_op

__all__: list[str] = []  # the public functions live in the hubkit.text namespace


def _check_string(t, what: str) -> None:
    if t.dtype is not string:
        raise infer_error(f"{what} must be a string tensor, got {describe(t)}.")


def _map_strings(fn, x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape, dtype=object)
    out.reshape(-1)[:] = [fn(s) for s in x.reshape(-1).tolist()]
    return out


@register_op
class StringLower:
    """Lower-cases every string (Unicode-aware, as ``str.lower``)."""

    differentiable = False

    def infer(x):
        _check_string(x, "StringLower input")
        return string, x.shape

    def forward(x):
        return _map_strings(str.lower, x)


def compile_pattern(pattern: str, what: str) -> re.Pattern:
    """Compiles a regular expression, turning a syntax error into a GraphError naming ``what``."""
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as e:
        raise GraphError(f"{what}: invalid regular expression {pattern!r}: {e}.") from None


@register_op
class RegexReplace:
    """Replaces matches of ``pattern`` (Python ``re`` syntax) by ``rewrite`` (``\\1`` refers to groups)."""

    differentiable = False

    def infer(x, *, pattern, rewrite, replace_global=True):
        _check_string(x, "RegexReplace input")
        return string, x.shape

    @staticmethod
    def prepare(node: Node) -> dict[str, Any]:
        return {"regex": compile_pattern(node.attrs["pattern"], f"RegexReplace node {node.name!r}")}

    def forward(x, *, pattern, rewrite, replace_global=True, regex):
        count = 0 if replace_global else 1
        return _map_strings(lambda s: regex.sub(rewrite, s, count=count), x)


@register_op
class WhitespaceTokenize:
    """Splits each string of a 1-D tensor on runs of whitespace -> (tokens, row_ids, num_rows)."""

    differentiable = False

    def infer(x):
        _check_string(x, "WhitespaceTokenize input")
        if x.shape is not None and len(x.shape) != 1:
            raise infer_error(f"WhitespaceTokenize needs a 1-D tensor of strings, got {format_shape(x.shape)}.")
        return [(string, (None,)), (int64, (None,)), (int64, ())]

    def forward(x):
        parts = [s.split() for s in x.tolist()]
        counts = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        tokens = np.empty(int(counts.sum()), dtype=object)
        tokens[:] = list(chain.from_iterable(parts))
        row_ids = np.repeat(np.arange(len(parts), dtype=np.int64), counts)
        return tokens, row_ids, np.array(len(parts), dtype=np.int64)


# -- vocabulary tables ---------------------------------------------------------------------------------
class _TableSlot:
    """The vocabulary one compiled plan uses, reloaded only when the path it is fed changes."""

    __slots__ = ("cache", "path", "vocab")

    def __init__(self, cache: dict) -> None:
        self.cache = cache
        self.path: str | None = None
        self.vocab: _vocab.Vocabulary | None = None

    def get(self, path_value: Any) -> _vocab.Vocabulary:
        path = path_value.item() if isinstance(path_value, np.ndarray) else path_value
        if path != self.path or self.vocab is None:
            if not isinstance(path, str):
                raise GraphError(f"A vocabulary file path must be a string, got {path!r}.")
            self.vocab = _vocab.load_vocabulary(path, self.cache)
            self.path = path
        return self.vocab


# Where a vocabulary op may read its file path from: a module asset (copied by export, pointed at the
# module's own copy on load) or a placeholder the caller feeds at run time. A constant path would be
# read wherever the graph runs: a published module could name any file of the consumer's machine.
VOCAB_SOURCES = ("AssetPath", "Placeholder")


def _check_vocab_source(vocab_file, what: str) -> None:
    op = vocab_file.node.op
    if op not in VOCAB_SOURCES:
        raise infer_error(
            f"{what} comes from the {op} node {vocab_file.node.name!r}; it must come from one of "
            f"{sorted(VOCAB_SOURCES)} (hubkit.add_asset(path), so the file travels with the module, or a "
            "placeholder fed at run time)."
        )


def static_path(node: Node) -> str | None:
    """The file path a vocabulary input carries when known before running (an asset's current path)."""
    if node.op == "AssetPath":
        from hubkit.ops.assets import asset_source

        return asset_source(node)
    return None


class _VocabularyCaches(dict):
    """Per-graph state: vocabulary path node name -> loaded tables, shared by the graph's plans."""


def _table_slot(node: Node, path_input: int) -> dict[str, Any]:
    # One file cache per (graph, path): plans of the same graph share loaded tables.
    caches = node.graph.state_for(_VocabularyCaches)
    slot = _TableSlot(caches.setdefault(node.inputs[path_input].node.name, {}))
    path = static_path(node.inputs[path_input].node)
    if path is not None:
        slot.get(path)  # read the file when the plan is compiled, not on the first call
    return {"table": slot}


def _check_vocab_attrs(num_oov_buckets, default_value) -> None:
    if not isinstance(num_oov_buckets, int) or num_oov_buckets < 0:
        raise infer_error(f"num_oov_buckets must be an integer >= 0, got {num_oov_buckets!r}.")
    if not isinstance(default_value, int):
        raise infer_error(f"default_value must be an integer, got {default_value!r}.")


@register_op
class VocabLookup:
    """int64 id of each token: its line in the vocabulary file, else a hashed OOV bucket, else the default."""

    differentiable = False

    def infer(tokens, vocab_file, *, num_oov_buckets=0, default_value=-1):
        _check_string(tokens, "VocabLookup tokens")
        _check_string(vocab_file, "VocabLookup vocabulary file")
        _check_vocab_source(vocab_file, "The vocabulary file path")
        _check_vocab_attrs(num_oov_buckets, default_value)
        return int64, tokens.shape

    @staticmethod
    def prepare(node: Node) -> dict[str, Any]:
        return _table_slot(node, 1)

    def forward(tokens, vocab_file, *, num_oov_buckets=0, default_value=-1, table):
        vocab = table.get(vocab_file)
        return vocab.lookup(tokens.reshape(-1).tolist(), num_oov_buckets, default_value).reshape(tokens.shape)


@register_op
class TokenizeLookup:
    """Fused normalize + whitespace split + vocabulary lookup of a 1-D string tensor.

    Outputs (ids, row_ids, num_rows), the same values as ``StringLower`` (when ``lower``), a
    ``RegexReplace`` deleting ``[^\\w\\s]`` (when ``strip_punctuation``), ``WhitespaceTokenize``
    and ``VocabLookup`` in turn, in one pass (compiled with Numba for ASCII text when available).
    """

    differentiable = False

    def infer(sentences, vocab_file, *, lower=False, strip_punctuation=False, num_oov_buckets=0, default_value=-1):
        _check_string(sentences, "TokenizeLookup sentences")
        _check_string(vocab_file, "TokenizeLookup vocabulary file")
        _check_vocab_source(vocab_file, "The vocabulary file path")
        if sentences.shape is not None and len(sentences.shape) != 1:
            raise infer_error(f"TokenizeLookup needs a 1-D tensor of strings, got {format_shape(sentences.shape)}.")
        _check_vocab_attrs(num_oov_buckets, default_value)
        return [(int64, (None,)), (int64, (None,)), (int64, ())]

    @staticmethod
    def prepare(node: Node) -> dict[str, Any]:
        return _table_slot(node, 1)

    def forward(
        sentences, vocab_file, *, lower=False, strip_punctuation=False, num_oov_buckets=0, default_value=-1, table
    ):
        return _vocab.tokenize_and_lookup(
            sentences,
            table.get(vocab_file),
            lower=lower,
            strip_punctuation=strip_punctuation,
            num_oov_buckets=num_oov_buckets,
            default_value=default_value,
        )
