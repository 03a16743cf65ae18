"""String functions: lower-casing, regular-expression replacement and whitespace tokenization."""

from __future__ import annotations

from typing import Any

from hubkit.graph import Tensor, convert_to_tensor, string
from hubkit.ops.registry import apply
from hubkit.ops.sparse import RaggedTensor
from hubkit.ops.text import compile_pattern

__all__ = ["lower", "regex_replace", "whitespace_tokenize"]


def _strings(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else convert_to_tensor(x, dtype=string)


def lower(x: Any, name: str | None = None) -> Tensor:
    """Lower-cases each string of ``x`` (Unicode rules of ``str.lower``).

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     y = hk.text.lower(["Hello WORLD", "ÄÖ"])
    >>> hk.Session(g).run(y).tolist()
    ['hello world', 'äö']
    """
    return apply("StringLower", _strings(x), name=name or "StringLower")


def regex_replace(x: Any, pattern: str, rewrite: str, replace_global: bool = True, name: str | None = None) -> Tensor:
    """Replaces matches of ``pattern`` in each string of ``x`` by ``rewrite``.

    Args:
        x: string tensor (or strings).
        pattern: a regular expression in RE2 syntax (matched in linear time; no backreferences or
            look-around; ``\\w``, ``\\d`` and ``\\s`` match Unicode as in Python).
        rewrite: the replacement; ``\\1`` or ``\\g<name>`` refer to groups.
        replace_global: replace every match (True) or only the first.
        name: node name.

    Raises:
        GraphError: ``pattern`` is not a valid regular expression.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     y = hk.text.regex_replace(["a, b; c!"], r"[^\\w\\s]", "")
    >>> hk.Session(g).run(y).tolist()
    ['a b c']
    """
    compile_pattern(pattern, "regex_replace")  # fail while building, not when running
    return apply(
        "RegexReplace", _strings(x), name=name or "RegexReplace", pattern=pattern, rewrite=rewrite,
        replace_global=bool(replace_global),
    )


def whitespace_tokenize(x: Any, name: str | None = None) -> RaggedTensor:
    """Splits each string of the 1-D ``x`` on runs of whitespace (as ``str.split()``).

    Returns:
        A :class:`RaggedTensor`: ``values`` the tokens (string ``[None]``), ``row_ids`` the index of
        the sentence of each token, ``num_rows`` the number of sentences. Empty and all-whitespace
        strings have no tokens.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     t = hk.text.whitespace_tokenize(["a b", "", " c "])
    >>> values, row_ids, n = hk.Session(g).run([t.values, t.row_ids, t.num_rows])
    >>> values.tolist(), row_ids.tolist(), int(n)
    (['a', 'b', 'c'], [0, 0, 2], 3)
    """
    values, row_ids, num_rows = apply("WhitespaceTokenize", _strings(x), name=name or "WhitespaceTokenize")
    return RaggedTensor(values, row_ids, num_rows)
