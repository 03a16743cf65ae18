"""TF-exact string ops and lookup tables.

- ``StringSplit`` splits on any byte of the delimiter (each byte when it is empty) and skips empty
  tokens; its result is sparse: ``indices [n, 2]``, ``values [n]``, ``dense_shape [2]``.
- ``RegexReplace``/``StaticRegexReplace`` use RE2 (the ``re2`` module of google-re2), whose syntax
  differs from Python's ``re`` (``\\pP``, no backreferences in patterns); in the rewrite ``\\0`` is the
  whole match and ``\\1``..``\\9`` are groups.
- ``StringLower`` lowers ASCII letters only unless ``encoding="utf-8"``.
- ``StringToHashBucketFast`` is FarmHash ``Fingerprint64`` of the UTF-8 bytes modulo the bucket count.
- Text-file tables read a vocabulary asset the way TF's ``InitializeTableFromTextFileV2`` does: one
  key per line (whole line, line number or a delimited column), a ``\\r`` before a line end dropped,
  an empty line or a key repeated with another value refused.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from typing import Any

import numpy as np

from hubkit.errors import FormatError
from hubkit.graph import int64, string
from hubkit.ops._farmhash import fingerprint64
from hubkit.ops.assets import asset_source
from hubkit.ops.registry import infer_error, register_op
from hubkit.ops.tf_array import TfRuntimeError

__all__ = ["LINE_NUMBER", "WHOLE_LINE", "read_text_file_table"]

WHOLE_LINE = -2
LINE_NUMBER = -1
MAX_TABLE_FILE_BYTES = 1 << 30


def _strings(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=object)


def _map(fn, x: np.ndarray, dtype: Any = object) -> np.ndarray:
    flat = [fn(s) for s in np.asarray(x, dtype=object).reshape(-1)]
    return np.array(flat, dtype=dtype).reshape(np.shape(x))


# -- splitting -----------------------------------------------------------------------------------------
def _split_one(s: str, delimiter: str, skip_empty: bool) -> list[str]:
    if delimiter == "":
        data = s.encode("utf-8")
        return [data[i:i + 1].decode("utf-8", "surrogateescape") for i in range(len(data))]
    if delimiter.isascii():
        if len(delimiter) > 1:
            s = s.translate({ord(c): delimiter[0] for c in delimiter[1:]})
        parts = s.split(delimiter[0])
    else:  # split on bytes, as TF does, even inside multi-byte characters
        data = s.encode("utf-8")
        seps = set(delimiter.encode("utf-8"))
        parts, start = [], 0
        for i, b in enumerate(data):
            if b in seps:
                parts.append(data[start:i].decode("utf-8", "surrogateescape"))
                start = i + 1
        parts.append(data[start:].decode("utf-8", "surrogateescape"))
    return [p for p in parts if p] if skip_empty else parts


@register_op
class TfStringSplit:
    """TF ``StringSplit``: a vector of strings split on any byte of ``delimiter`` into a sparse matrix."""

    differentiable = False

    def infer(input, delimiter, *, skip_empty=True):
        if input.dtype is not string or delimiter.dtype is not string:
            raise infer_error("needs string input and delimiter.")
        return [(int64, (None, 2)), (string, (None,)), (int64, (2,))]

    def forward(input, delimiter, *, skip_empty=True):
        if input.ndim != 1:
            raise TfRuntimeError(f"StringSplit needs a vector of strings, got shape {list(input.shape)}.")
        d = str(delimiter.reshape(-1)[0]) if delimiter.size else ""
        if skip_empty and len(input) > 16 and d.isascii() and d:
            fast = _split_batch(input.tolist(), d)
            if fast is not None:
                return fast
        return _sparse_rows([_split_one(x, d, skip_empty) for x in input])


_ROW_MARK = "\x1f"  # not "\\x00": NumPy drops trailing NULs when it compares with a str


def _split_batch(rows: list[str], delimiter: str):
    """``StringSplit`` (empty tokens skipped) of a whole batch with three C-level passes instead of a Python
    loop per string: the rows joined by a mark, every delimiter byte mapped to the first, one ``str.split``, and
    NumPy finding the marks (row ends) and the empty tokens. ``None`` when a string holds the mark (or the mark is
    a delimiter): the caller then splits row by row."""
    if _ROW_MARK in delimiter:
        return None
    d0 = delimiter[0]
    joined = _ROW_MARK.join(rows)
    if joined.count(_ROW_MARK) != len(rows) - 1:
        return None
    if len(delimiter) > 1:
        joined = joined.translate({ord(c): d0 for c in delimiter[1:]})
    parts = np.array(joined.replace(_ROW_MARK, d0 + _ROW_MARK + d0).split(d0), dtype=object)
    mark = parts == _ROW_MARK
    keep = ~mark & (parts != "")
    row_of = np.cumsum(mark)[keep]
    counts = np.bincount(row_of, minlength=len(rows))
    starts = np.cumsum(counts) - counts
    cols = np.arange(len(row_of), dtype=np.int64) - starts[row_of]
    indices = np.stack([row_of.astype(np.int64), cols], axis=1).reshape(-1, 2)
    width = int(counts.max()) if len(rows) else 0
    return indices, parts[keep], np.array([len(rows), width], dtype=np.int64)


def _split_v2_one(s: str, sep: str, maxsplit: int) -> list[str]:
    if sep:
        return s.split(sep, maxsplit)
    # whitespace mode splits on ASCII whitespace only (as TF; str.split() would also split on U+00A0)
    return [p.decode("utf-8", "surrogateescape") for p in s.encode("utf-8", "surrogateescape").split(None, maxsplit)]


@register_op
class TfStringSplitV2:
    """TF ``StringSplitV2`` (``tf.strings.split``): Python ``str.split(sep, maxsplit)`` semantics; ``sep=""``
    splits on runs of ASCII whitespace and drops empty tokens."""

    differentiable = False

    def infer(input, sep, *, maxsplit=-1):
        if input.dtype is not string or sep.dtype is not string:
            raise infer_error("needs string input and separator.")
        return [(int64, (None, 2)), (string, (None,)), (int64, (2,))]

    def forward(input, sep, *, maxsplit=-1):
        if input.ndim != 1:
            raise TfRuntimeError(f"StringSplitV2 needs a vector of strings, got shape {list(input.shape)}.")
        separator = str(sep.reshape(-1)[0]) if sep.size else ""
        rows = [_split_v2_one(x, separator, int(maxsplit)) for x in input]
        return _sparse_rows(rows)


def _sparse_rows(rows: list[list[str]]):
    width = max((len(r) for r in rows), default=0)
    tokens = [t for r in rows for t in r]
    if len(tokens) <= 64:  # small batches: Python lists beat a dozen NumPy calls
        values = np.empty(len(tokens), dtype=object)
        values[:] = tokens
        pairs = [(i, j) for i, r in enumerate(rows) for j in range(len(r))]
        return (np.array(pairs, dtype=np.int64).reshape(-1, 2), values,
                np.array([len(rows), width], dtype=np.int64))
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    row_ids = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    cols = np.arange(len(row_ids), dtype=np.int64) - starts
    values = np.empty(len(row_ids), dtype=object)
    values[:] = [t for r in rows for t in r]
    return np.stack([row_ids, cols], axis=1).reshape(-1, 2), values, np.array([len(rows), width], dtype=np.int64)


@register_op
class TfStringJoin:
    """TF ``StringJoin``: the inputs (scalars broadcast) joined elementwise with ``separator``."""

    differentiable = False

    def infer(*inputs, separator=""):
        shapes = [t.shape for t in inputs if t.shape != ()]
        if any(t.dtype is not string for t in inputs):
            raise infer_error("needs string inputs.")
        return string, shapes[0] if shapes else ()

    def forward(*inputs, separator=""):
        arrays = np.broadcast_arrays(*[np.asarray(a, dtype=object) for a in inputs])
        out = np.empty(arrays[0].shape, dtype=object)
        flat = out.reshape(-1)
        columns = [a.reshape(-1) for a in arrays]
        for i in range(flat.size):
            flat[i] = separator.join(str(c[i]) for c in columns)
        return out


# -- regular expressions ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _compile(pattern: str):
    import re2

    try:
        return re2.compile(pattern)
    except Exception as e:  # re2.error and friends
        raise ValueError(f"the RE2 pattern {pattern!r} is invalid: {e}") from None


@functools.lru_cache(maxsize=256)
def _rewrite_parts(rewrite: str) -> tuple[str | int, ...]:
    """RE2's rewrite string as literal pieces and group numbers: ``\\0``-``\\9`` groups, ``\\\\`` a backslash."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    while i < len(rewrite):
        c = rewrite[i]
        if c == "\\" and i + 1 < len(rewrite):
            n = rewrite[i + 1]
            if n.isdigit():
                parts.append("".join(literal))
                literal = []
                parts.append(int(n))
                i += 2
                continue
            if n == "\\":
                literal.append("\\")
                i += 2
                continue
            raise ValueError(f"the rewrite {rewrite!r} has the invalid escape '\\{n}'")
        literal.append(c)
        i += 1
    parts.append("".join(literal))
    return tuple(parts)


def _check_rewrite(rx: Any, rewrite: str) -> None:
    groups = max((p for p in _rewrite_parts(rewrite) if isinstance(p, int)), default=0)
    if groups > rx.groups:
        raise ValueError(f"the rewrite {rewrite!r} uses group {groups}, but the pattern has only {rx.groups}")


def _utf8_len(lead: int) -> int:
    return 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def _sub_bytes(regexp: Any, data: bytes, parts: tuple[str | int, ...], count: int) -> bytes:
    """Replaces matches in UTF-8 ``data`` like ``re2``'s ``sub`` (an empty match steps one character on), calling
    RE2 once per match instead of the wrapper's per-match Python bookkeeping."""
    import re2

    unanchored = re2._re2.RE2.Anchor.UNANCHORED
    pieces = [p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p for p in parts]
    out: list[bytes] = []
    pos, last, end, n = 0, 0, len(data), 0
    while True:
        spans = regexp.Match(unanchored, data, pos, end)
        start, stop = spans[0]
        if start == -1:
            break
        out.append(data[last:start])
        for p in pieces:
            if isinstance(p, bytes):
                out.append(p)
            elif spans[p][0] != -1:
                out.append(data[spans[p][0]:spans[p][1]])
        last = stop
        n += 1
        if (count and n >= count) or pos == end:
            break
        pos = pos + _utf8_len(data[pos]) if pos == stop else stop
    out.append(data[last:])
    return b"".join(out)


# One character class, optionally repeated: a match never spans the row mark when the mark does not match it.
_CLASS_ATOM = re.compile(
    r"(?:\\[pP][A-Za-z]|\\[pP]\{\^?[A-Za-z_ ]+\}|\\[sSdDwW]|\[\^?\]?(?:[^\]\\\[]|\\.|\[:\^?[a-z]+:\])*\])\+?")


def _regex_replace_joined(x: np.ndarray, rx: Any, regexp: Any, parts: tuple[str | int, ...]) -> np.ndarray | None:
    """A global replacement of a single character class (``\\pP``, ``[\\pP\\s]+``) over a whole batch in one RE2
    scan: the strings joined by a mark the class does not match and no string holds, so every match lies inside
    one string and the result splits back at the marks. ``None`` when that does not hold."""
    if rx.search(_ROW_MARK) is not None or any(isinstance(p, str) and _ROW_MARK in p for p in parts):
        return None
    flat = x.reshape(-1).tolist()
    joined = _ROW_MARK.join(flat)
    if joined.count(_ROW_MARK) != len(flat) - 1:
        return None
    data = joined.encode("utf-8", "surrogateescape")
    out = _sub_bytes(regexp, data, parts, 0).decode("utf-8", "surrogateescape").split(_ROW_MARK)
    result = np.empty(len(flat), dtype=object)
    result[:] = out
    return result.reshape(x.shape)


def _regex_replace(x: np.ndarray, pattern: str, rewrite: str, replace_global: bool) -> np.ndarray:
    rx = _compile(pattern)
    _check_rewrite(rx, rewrite)
    parts = _rewrite_parts(rewrite)
    count = 0 if replace_global else 1
    regexp = getattr(rx, "_regexp", None)
    if regexp is not None and replace_global and x.size > 16 and _CLASS_ATOM.fullmatch(pattern):
        fast = _regex_replace_joined(x, rx, regexp, parts)
        if fast is not None:
            return fast
    if regexp is None:  # another re2 wrapper: its own sub has the same semantics
        def repl(m: Any) -> str:
            return "".join(p if isinstance(p, str) else (m.group(p) or "") for p in parts)

        return _map(lambda s: rx.sub(repl, s, count=count), x)
    return _map(lambda s: _sub_bytes(regexp, s.encode("utf-8", "surrogateescape"), parts, count).decode(
        "utf-8", "surrogateescape"), x)


@register_op
class TfStaticRegexReplace:
    """TF ``StaticRegexReplace``: RE2 ``pattern`` and ``rewrite`` as attributes."""

    differentiable = False

    def infer(input, *, pattern, rewrite, replace_global=True):
        if input.dtype is not string:
            raise infer_error(f"needs strings, got {input.dtype.name}.")
        try:
            _check_rewrite(_compile(pattern), rewrite)
        except ValueError as e:
            raise infer_error(str(e)) from None
        return string, input.shape

    def forward(input, *, pattern, rewrite, replace_global=True):
        return _regex_replace(input, pattern, rewrite, replace_global)


@register_op
class TfRegexReplace:
    """TF ``RegexReplace``: RE2 ``pattern`` and ``rewrite`` as scalar string inputs."""

    differentiable = False

    def infer(input, pattern, rewrite, *, replace_global=True):
        if input.dtype is not string:
            raise infer_error(f"needs strings, got {input.dtype.name}.")
        return string, input.shape

    def forward(input, pattern, rewrite, *, replace_global=True):
        return _regex_replace(input, str(pattern), str(rewrite), replace_global)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


@register_op
class TfStringLower:
    """TF ``StringLower``: ASCII letters only (``encoding=""``) or Unicode (``encoding="utf-8"``)."""

    differentiable = False

    def infer(input, *, encoding=""):
        if encoding not in ("", "utf-8"):
            raise infer_error(f"unknown encoding {encoding!r}; expected one of ['', 'utf-8'].")
        return string, input.shape

    def forward(input, *, encoding=""):
        if input.size > 16:
            flat = input.reshape(-1).tolist()
            joined = _ROW_MARK.join(flat)  # lowering never makes or removes the mark: one pass over the batch
            if joined.count(_ROW_MARK) == len(flat) - 1:
                if encoding == "utf-8" or joined.isascii():
                    joined = joined.lower()
                else:
                    joined = joined.translate(_ASCII_LOWER)
                out = np.empty(len(flat), dtype=object)
                out[:] = joined.split(_ROW_MARK)
                return out.reshape(input.shape)
        if encoding == "utf-8":
            return _map(str.lower, input)
        return _map(lambda s: s.lower() if s.isascii() else s.translate(_ASCII_LOWER), input)


@register_op
class TfStringToHashBucketFast:
    """TF ``StringToHashBucketFast``: FarmHash Fingerprint64 of the UTF-8 bytes, modulo ``num_buckets``."""

    differentiable = False

    def infer(input, *, num_buckets):
        if int(num_buckets) < 1:
            raise infer_error(f"num_buckets must be at least 1, got {num_buckets}.")
        return int64, input.shape

    def forward(input, *, num_buckets):
        n = int(num_buckets)
        flat = np.asarray(input, dtype=object).reshape(-1).tolist()
        # tokens repeat (words): hash each distinct one once per call
        memo = {t: fingerprint64(t.encode("utf-8", "surrogateescape")) % n for t in dict.fromkeys(flat)}
        return np.array(list(map(memo.__getitem__, flat)), dtype=np.int64).reshape(np.shape(input))


# -- lookup tables -----------------------------------------------------------------------------------------
def _convert(text: str, dtype, where: str) -> Any:
    if dtype is string:
        return text
    try:
        return int(text) if dtype.is_integer else float(text)
    except ValueError:
        raise FormatError(f"{where}: {text!r} is not a valid {dtype.name}.") from None


def read_text_file_table(path: str, *, key_index: Any, value_index: Any, vocab_size: Any, delimiter: Any,
                         key_dtype: Any, value_dtype: Any) -> dict:
    """The dict TF's ``InitializeTableFromTextFileV2`` builds from ``path``.

    Raises:
        FormatError: naming the file: unreadable, an empty line, a missing column, a value that does not
            parse, fewer lines than ``vocab_size``, or one key with two values.
    """
    try:
        if os.path.getsize(path) > MAX_TABLE_FILE_BYTES:
            raise FormatError(f"Vocabulary file {path!r} is larger than {MAX_TABLE_FILE_BYTES} bytes.")
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FormatError(f"Vocabulary file {path!r} cannot be read: {e.strerror or e}.") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if vocab_size is not None and vocab_size >= 0:
        if len(lines) < vocab_size:
            raise FormatError(f"Vocabulary file {path!r} has {len(lines)} lines, fewer than its vocab_size {vocab_size}.")
        lines = lines[:vocab_size]
    table: dict = {}
    for number, raw in enumerate(lines):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        where = f"Vocabulary file {path!r} line {number + 1}"
        if not raw:
            raise FormatError(f"{where} is empty; TensorFlow refuses empty lines in a vocabulary.")
        line = raw.decode("utf-8", "surrogateescape")
        columns = line.split(delimiter) if delimiter else [line]
        key = _pick(key_index, key_dtype, line, columns, number, where)
        value = _pick(value_index, value_dtype, line, columns, number, where)
        if key in table and table[key] != value:
            raise FormatError(f"{where} repeats the key {key!r} with another value ({table[key]!r} and {value!r}).")
        table[key] = value
    return table


def _pick(index: int, dtype, line: str, columns: list[str], number: int, where: str) -> Any:
    if index == WHOLE_LINE:
        return _convert(line, dtype, where)
    if index == LINE_NUMBER:
        return number
    if index >= len(columns):
        raise FormatError(f"{where} has {len(columns)} columns; column {index} is needed.")
    return _convert(columns[index], dtype, where)


def _table_attrs(node) -> dict:
    return {k: node.attrs[k] for k in ("key_index", "value_index", "vocab_size", "delimiter", "key_dtype",
                                       "value_dtype")}


def _lookup(table: dict, keys: np.ndarray, default: np.ndarray, dtype) -> np.ndarray:
    d = default.reshape(-1)[0] if default.size else None
    flat = np.asarray(keys, dtype=object).reshape(-1).tolist()
    found = list(map(table.get, flat, itertools.repeat(d, len(flat))))  # a C loop, no Python frame per key
    return np.array(found, dtype=dtype.np_dtype).reshape(keys.shape)


@register_op
class TfTextFileTableLookup:
    """TF ``LookupTableFindV2`` on a table initialised from a text file (the filename input is an asset)."""

    differentiable = False

    def infer(filename, keys, default, **attrs):
        return attrs["value_dtype"], keys.shape

    def prepare(node):
        return {"table": read_text_file_table(asset_source(node.inputs[0]), **_table_attrs(node))}

    def forward(filename, keys, default, *, table, **attrs):
        if attrs["key_dtype"] is not string:
            keys = keys.astype(np.int64)
        return _lookup(table, keys, default, attrs["value_dtype"])


@register_op
class TfTextFileTableSize:
    """TF ``LookupTableSizeV2`` of a table initialised from a text file."""

    differentiable = False

    def infer(filename, **attrs):
        return int64, ()

    def prepare(node):
        return {"table": read_text_file_table(asset_source(node.inputs[0]), **_table_attrs(node))}

    def forward(filename, *, table, **attrs):
        return np.array(len(table), dtype=np.int64)


@register_op
class TfConstTableLookup:
    """TF ``LookupTableFindV2`` on a table initialised from constant keys and values."""

    differentiable = False

    def infer(keys, default, *, table_keys, table_values, value_dtype):
        return value_dtype, keys.shape

    def prepare(node):
        keys, values = node.attrs["table_keys"], node.attrs["table_values"]
        return {"table": dict(zip(np.asarray(keys).reshape(-1).tolist(), np.asarray(values).reshape(-1).tolist()))}

    def forward(keys, default, *, table, table_keys, table_values, value_dtype):
        return _lookup(table, keys, default, value_dtype)
