"""Vocabulary lookup tables initialised from a file (normally a module asset)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hubkit.errors import GraphError, HubkitError
from hubkit.graph import Tensor, convert_to_tensor, string
from hubkit.ops import _vocab
from hubkit.ops.registry import apply
from hubkit.ops.sparse import RaggedTensor
from hubkit.ops.text import VOCAB_SOURCES, static_path

__all__ = ["VocabularyTable", "vocabulary_table"]


class VocabularyTable:
    """Maps tokens to int64 ids: the token's line in the vocabulary file, else an OOV bucket.

    Made by :func:`vocabulary_table`. Ids ``0 .. vocab_size - 1`` are vocabulary lines; with
    ``num_oov_buckets > 0`` an unknown token gets ``vocab_size + fingerprint64(token) %
    num_oov_buckets`` (FNV-1a 64 of its UTF-8 bytes, identical in every process), else
    ``default_value``.

    Attributes:
        vocab_file: the string scalar tensor naming the file.
        vocab_size: number of lines of the file (None when the path is only known at run time).
        num_oov_buckets: number of hashed ids after the vocabulary.
        default_value: the id of unknown tokens when there are no buckets.
    """

    def __init__(self, vocab_file: Tensor, num_oov_buckets: int, default_value: int, vocab_size: int | None) -> None:
        self.vocab_file = vocab_file
        self.num_oov_buckets = num_oov_buckets
        self.default_value = default_value
        self.vocab_size = vocab_size

    def size(self) -> int:
        """How many distinct ids the table gives: ``vocab_size + num_oov_buckets``."""
        if self.vocab_size is None:
            raise GraphError("The vocabulary size is unknown: the file path is only known when the graph runs.")
        return self.vocab_size + self.num_oov_buckets

    def _attrs(self) -> dict[str, Any]:
        return {"num_oov_buckets": self.num_oov_buckets, "default_value": self.default_value}

    def lookup(self, tokens: Any, name: str | None = None) -> Any:
        """int64 ids of ``tokens`` (a string tensor of any shape, or a RaggedTensor of strings).

        Returns:
            A tensor of the shape of ``tokens``, or a RaggedTensor with the same rows.
        """
        if isinstance(tokens, RaggedTensor):
            return tokens.with_values(self.lookup(tokens.values, name=name))
        t = tokens if isinstance(tokens, Tensor) else convert_to_tensor(tokens, dtype=string)
        return apply("VocabLookup", t, self.vocab_file, name=name or "VocabLookup", **self._attrs())

    def tokenize_and_lookup(
        self, sentences: Any, lower: bool = False, strip_punctuation: bool = False, name: str | None = None
    ) -> RaggedTensor:
        """Normalizes, splits on whitespace and looks up each sentence of a 1-D string tensor in one op.

        Gives the same ids as ``lookup(whitespace_tokenize(...))`` after ``hubkit.text.lower`` (when
        ``lower``) and deleting every character that is neither a word character nor whitespace
        (``regex_replace(x, r"[^\\w\\s]", "")``, when ``strip_punctuation``), in one pass; with
        Numba installed, ASCII batches run compiled.

        Returns:
            A :class:`RaggedTensor` of int64 ids with one row per sentence.
        """
        t = sentences if isinstance(sentences, Tensor) else convert_to_tensor(sentences, dtype=string)
        ids, row_ids, num_rows = apply(
            "TokenizeLookup", t, self.vocab_file, name=name or "TokenizeLookup", lower=bool(lower),
            strip_punctuation=bool(strip_punctuation), **self._attrs(),
        )
        return RaggedTensor(ids, row_ids, num_rows)

    def __repr__(self) -> str:
        return (
            f"<hubkit.text.VocabularyTable {self.vocab_file.name!r} vocab_size={self.vocab_size} "
            f"num_oov_buckets={self.num_oov_buckets}>"
        )


def _as_asset(path: str, graph: Any = None) -> Tensor:
    """An ``AssetPath`` tensor for ``path`` (in ``graph``, else the default graph): export copies the file."""
    from hubkit.module.assets import add_asset

    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise GraphError(f"Vocabulary file {path!r} does not exist.")
    if graph is None:
        return add_asset(path, name="vocabulary_file")
    with graph.as_default():
        return add_asset(path, name="vocabulary_file")


def _as_file_tensor(asset: Any) -> Tensor:
    if isinstance(asset, Tensor):
        if asset.dtype is not string or asset.shape not in (None, ()):
            raise GraphError(f"A vocabulary file must be a string scalar tensor, got {asset.name!r}.")
        node = asset.node
        if node.op == "Const":  # a path known now: registered as an asset, so it travels with the module
            return _as_asset(str(np.asarray(node.attrs["value"]).item()), asset.graph)
        if node.op not in VOCAB_SOURCES:
            raise GraphError(
                f"A vocabulary file tensor must come from one of {sorted(VOCAB_SOURCES)} (hubkit.add_asset or a "
                f"placeholder fed at run time), got {asset.name!r} from a {node.op} node: a computed path would "
                "not travel with an exported module."
            )
        return asset
    if isinstance(asset, (str, os.PathLike)):
        return _as_asset(os.fspath(asset))
    raise GraphError(f"A vocabulary file must be a path or a string tensor from hubkit.add_asset, got {asset!r}.")


def vocabulary_table(asset: Any, num_oov_buckets: int = 0, default_value: int = -1) -> VocabularyTable:
    """A lookup table from the vocabulary file ``asset`` (one token per line; a token's id is its line).

    Args:
        asset: ``hubkit.add_asset(path)`` (so the file is exported with the module), a path or a
            string constant (both registered with ``add_asset``), or a string scalar placeholder
            fed with the path at run time. Other string tensors are refused (GraphError): a
            computed path would not travel with an exported module.
        num_oov_buckets: how many ids after the vocabulary unknown tokens are hashed into.
        default_value: the id of unknown tokens when ``num_oov_buckets`` is 0.

    Returns:
        A :class:`VocabularyTable`.

    Raises:
        GraphError: bad arguments, or a file that does not exist.

    >>> import hubkit as hk, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> _ = open(path, "w").write("the\\ncat\\n")
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     table = hk.text.vocabulary_table(hk.constant(path), num_oov_buckets=2)
    ...     ids = table.lookup(["cat", "the", "dog"])
    >>> table.size(), hk.Session(g).run(ids).tolist()
    (4, [1, 0, 3])
    """
    if isinstance(num_oov_buckets, bool) or not isinstance(num_oov_buckets, int) or num_oov_buckets < 0:
        raise GraphError(f"num_oov_buckets must be an integer >= 0, got {num_oov_buckets!r}.")
    if isinstance(default_value, bool) or not isinstance(default_value, int):
        raise GraphError(f"default_value must be an integer, got {default_value!r}.")
    vocab_file = _as_file_tensor(asset)
    size = None
    try:
        path = static_path(vocab_file.node)
    except HubkitError:
        path = None
    if path is not None:
        try:
            size = _vocab.load_vocabulary(path).size
        except HubkitError as e:
            raise GraphError(f"Cannot use vocabulary file {path!r}: {e}") from None
    return VocabularyTable(vocab_file, num_oov_buckets, default_value, size)
