"""The TF string pipeline over one UTF-8 buffer: a plan rewrite, exact per op.

A TF1 text module runs ``RegexReplace -> StringLower -> StringSplit -> LookupTableFind /
StringToHashBucketFast`` on every sentence. Row by row those ops make one Python string per token. This pass
(:func:`buffer_text_steps`, called by the plan optimiser when Numba is enabled) lets the strings flow between
them as :class:`Utf8Strings` instead: the batch joined once into a ``uint8`` buffer with byte offsets, split
into token offsets, rewritten and lower-cased as bytes, hashed with FarmHash ``Fingerprint64`` (computed once
per token and shared by the hash buckets and the table probe) and looked up in an open-addressing table of the
vocabulary's fingerprints built once per table (:mod:`hubkit.ops._numba_text`).

Which slots carry buffers is decided once per plan: a string output whose every reader accepts a buffer and that
is not fetched. Each rewritten step keeps its op's exact semantics and falls back to the op's own (object array)
kernel, on the strings made back from the buffer, whenever its fast path does not apply: a string that is not
valid Unicode text (a lone surrogate), a regular expression other than one character class (optionally ``+``)
with a literal rewrite, Unicode lowering of non-ASCII text, a table with string values, or Numba switched off
since the plan was compiled. Without Numba the plan is not rewritten at all: the ops' NumPy kernels run.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from hubkit.graph import string
from hubkit.ops import _numba
from hubkit.ops.tf_text import _CLASS_ATOM, _compile, _rewrite_parts

__all__ = ["Utf8Strings", "buffer_text_steps", "kernels"]


# Fewer strings than this stay Python strings (the ops' own kernels): a dozen Numba calls cost more there.
MIN_BUFFER_STRINGS = 16


def kernels() -> Any:
    """The :mod:`hubkit.ops._numba_text` module, or None when Numba is off or cannot be imported."""
    if not _numba.numba_enabled():
        return None
    if not _loaded:
        try:
            from hubkit.ops import _numba_text
        except Exception:  # numba present but broken: the NumPy kernels run
            return None
        _loaded.append(_numba_text)
    return _loaded[0]


_loaded: list[Any] = []


class Utf8Strings:
    """A string array as one UTF-8 buffer: element ``k`` is ``data[starts[k]:ends[k]]``.

    Attributes:
        data: uint8 bytes (elements may share or skip bytes: tokens point into their sentences' buffer).
        starts, ends: int64 byte offsets of each element, in row-major order of ``shape``.
        shape: the array's shape.
        valid: every element is valid UTF-8 (false after splitting inside multi-byte characters).
    """

    __slots__ = ("_fps", "data", "ends", "shape", "starts", "valid")

    def __init__(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, shape: tuple[int, ...],
                 valid: bool) -> None:
        self.data, self.starts, self.ends, self.shape, self.valid = data, starts, ends, shape, valid
        self._fps: np.ndarray | None = None

    @classmethod
    def from_array(cls, x: np.ndarray, k: Any) -> Utf8Strings | None:
        """The buffer of an object array of ``str``; None when an element is not a str of valid Unicode."""
        items = x.reshape(-1).tolist()
        try:
            joined = "\x00".join(items)  # rows found by Numba at the NULs, when no row holds one
            raw = joined.encode("utf-8")  # strict: a lone surrogate has no UTF-8 bytes (fall back)
        except (TypeError, UnicodeEncodeError):
            return None
        data = np.frombuffer(raw, dtype=np.uint8)
        starts, ends = np.empty(len(items), dtype=np.int64), np.empty(len(items), dtype=np.int64)
        if not items:
            pass
        elif joined.count("\x00") == len(items) - 1:
            k.row_offsets(data, starts, ends)
        else:  # a row holds a NUL: its lengths in code points, made byte offsets
            lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items)) + 1
            lengths[-1] -= 1
            k.byte_offsets(data, lengths, starts, ends)
            ends -= 1
            ends[-1] += 1
        return cls(data, starts, ends, x.shape, True)

    def fingerprints(self, k: Any) -> np.ndarray:
        """FarmHash Fingerprint64 (uint64) of each element, computed once."""
        if self._fps is None:
            fps = np.empty(self.starts.shape[0], dtype=np.uint64)
            k.fingerprints(self.data, self.starts, self.ends, fps)
            self._fps = fps
        return self._fps

    def to_array(self) -> np.ndarray:
        """The object array of ``str`` (bytes that are not UTF-8 decoded with ``surrogateescape``, as the ops do)."""
        raw = self.data.tobytes()
        out = np.empty(self.starts.shape[0], dtype=object)
        out[:] = [raw[s:e].decode("utf-8", "surrogateescape") for s, e in zip(self.starts.tolist(), self.ends.tolist())]
        return out.reshape(self.shape)


def _as_array(x: Any) -> Any:
    return x.to_array() if isinstance(x, Utf8Strings) else x


def _as_buffer(x: Any, k: Any) -> Utf8Strings | None:
    if isinstance(x, Utf8Strings):
        return x
    if isinstance(x, np.ndarray) and x.dtype == object and x.size >= MIN_BUFFER_STRINGS:
        return Utf8Strings.from_array(x, k)
    return None


class BufferedStep:
    """A plan step's kernel that reads and writes :class:`Utf8Strings` where it can.

    ``emit`` holds the output positions its readers take as buffers; any input may arrive as a buffer or as an
    object array. ``fast(k, *inputs, **kwargs)`` returns the outputs, or None to run ``forward`` on arrays.
    """

    __slots__ = ("emit", "fast", "first", "forward", "label")

    def __init__(self, op: str, forward: Callable[..., Any], fast: Callable[..., Any], emit: frozenset[int]) -> None:
        self.forward, self.fast, self.emit = forward, fast, emit
        self.first = 1 if op == "TfTextFileTableLookup" else 0  # the string input
        self.label = f"{op}[utf8]"

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        x = inputs[self.first]  # the one input that can be a buffer
        buffered = isinstance(x, Utf8Strings)
        if buffered or x.size >= MIN_BUFFER_STRINGS:
            k = kernels()
            if k is not None:
                out = self.fast(k, *inputs, **kwargs)
                if out is not None:
                    if isinstance(out, tuple):
                        return tuple(v if i in self.emit else _as_array(v) for i, v in enumerate(out))
                    return out if 0 in self.emit else _as_array(out)
            if buffered:
                inputs = inputs[:self.first] + (x.to_array(),) + inputs[self.first + 1:]
        return self.forward(*inputs, **kwargs)

    def __repr__(self) -> str:
        return f"BufferedStep({self.label})"


# -- RegexReplace of one character class -------------------------------------------------------------------
_ATOM_PLUS = re.compile(r"(?P<atom>.+?)(?P<plus>\+)?")


class _ClassRewrite:
    """``pattern`` (one character class, optionally ``+``) replaced by a literal: RE2 decides each code point's
    membership once (ASCII at build time, others when first seen), the replacement runs over bytes."""

    def __init__(self, pattern: str, rewrite: bytes) -> None:
        m = _ATOM_PLUS.fullmatch(pattern)
        assert m is not None  # _CLASS_ATOM matched the pattern
        self.atom = _compile(m.group("atom"))
        self.runs = m.group("plus") is not None
        self.rewrite = np.frombuffer(rewrite, dtype=np.uint8)
        self.member = np.zeros(0x110000, dtype=np.uint8)  # 0 unknown, 1 no, 2 yes (3 while being resolved)
        self._resolve(range(128))
        self.lock = threading.Lock()

    def _resolve(self, code_points: Any) -> None:
        for c in code_points:
            self.member[c] = 2 if self.atom.fullmatch(chr(c)) is not None else 1

    def apply(self, k: Any, buf: Utf8Strings) -> Utf8Strings:
        data, starts, ends = buf.data, buf.starts, buf.ends
        out = np.empty(data.shape[0] * max(1, self.rewrite.shape[0]), dtype=np.uint8)
        out_starts, out_ends = np.empty_like(starts), np.empty_like(ends)
        unknown = np.empty(data.shape[0], dtype=np.int64)
        with self.lock:  # membership entries are filled in place
            while True:
                used, n = k.class_replace(data, starts, ends, self.member, self.runs, self.rewrite, out, out_starts,
                                          out_ends, unknown)
                if not n:
                    break
                self._resolve(unknown[:n].tolist())
        return Utf8Strings(out[:used], out_starts, out_ends, buf.shape, True)


@functools.lru_cache(maxsize=16)  # 1.1 MB of membership bytes each
def _class_rewrite(pattern: str, rewrite: str) -> _ClassRewrite | None:
    if not _CLASS_ATOM.fullmatch(pattern):
        return None
    try:
        parts = _rewrite_parts(rewrite)
        _compile(pattern)
    except ValueError:
        return None  # the op's own kernel raises the error
    if any(isinstance(p, int) for p in parts):
        return None
    try:
        literal = "".join(str(p) for p in parts).encode("utf-8")  # strict: the output stays valid UTF-8
    except UnicodeEncodeError:
        return None
    return _ClassRewrite(pattern, literal)


def _regex_fast(k, input, *, pattern, rewrite, replace_global=True):
    if not replace_global:
        return None
    cr = _class_rewrite(pattern, rewrite)
    buf = _as_buffer(input, k) if cr is not None else None
    if buf is None or not buf.valid:
        return None
    return cr.apply(k, buf)


def _lower_fast(k, input, *, encoding=""):
    buf = _as_buffer(input, k)
    if buf is None:
        return None
    if encoding == "utf-8" and not (buf.valid and k.max_byte(buf.data) < 0x80):
        return None  # Unicode lowering of non-ASCII text: str.lower
    out = np.empty_like(buf.data)
    k.lower_ascii(buf.data, out)
    return Utf8Strings(out, buf.starts, buf.ends, buf.shape, buf.valid)


def _split_fast(k, input, delimiter, *, skip_empty=True):
    if len(input.shape) != 1:
        return None  # the op's kernel raises its error
    buf = _as_buffer(input, k)
    if buf is None:
        return None
    d = str(delimiter.reshape(-1)[0]) if delimiter.size else ""
    try:
        dbytes = d.encode("utf-8")
    except UnicodeEncodeError:
        return None
    is_delim = np.zeros(256, dtype=np.bool_)
    is_delim[np.frombuffer(dbytes, dtype=np.uint8)] = True
    args = (buf.data, buf.starts, buf.ends, is_delim, not dbytes, bool(skip_empty))
    n, _ = k.split(*args, buf.starts, buf.ends, np.empty((0, 2), np.int64), True)  # count first: exact sizes
    tok_starts, tok_ends, indices = np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 2), np.int64)
    n, width = k.split(*args, tok_starts, tok_ends, indices, False)
    valid = buf.valid and bool(dbytes) and dbytes.isascii()  # ASCII delimiters never cut a character
    values = Utf8Strings(buf.data, tok_starts[:n], tok_ends[:n], (n,), valid)
    return indices, values, np.array([buf.starts.shape[0], width], dtype=np.int64)


def _hash_bucket_fast(k, input, *, num_buckets):
    if not isinstance(input, Utf8Strings):
        return None
    fps = input.fingerprints(k)
    return (fps % np.uint64(int(num_buckets))).astype(np.int64).reshape(input.shape)


class _VocabTable:
    """A lookup table's keys as an open-addressing table of their fingerprints (built once per table)."""

    def __init__(self, k: Any, table: dict, value_dtype: np.dtype) -> None:
        self.ok = all(isinstance(key, str) for key in table)
        # keys were decoded from the file's bytes that way
        encoded = [key.encode("utf-8", "surrogateescape") for key in table] if self.ok else []
        self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        self.values = np.array(list(table.values()) if self.ok else [], dtype=value_dtype)
        fps = np.empty(len(encoded), dtype=np.uint64)
        k.fingerprints(self.data, self.starts, self.ends, fps)
        capacity = 1 << max(4, (2 * len(encoded)).bit_length())
        self.slot_fp = np.zeros(capacity, dtype=np.uint64)
        self.slot_entry = np.zeros(capacity, dtype=np.int64)
        k.build_table(fps, self.data, self.starts, self.ends, self.slot_fp, self.slot_entry)


class _Lookup:
    """``LookupTableFindV2`` on a text-file table, probing the fingerprint table with a buffer's tokens."""

    def __init__(self) -> None:
        self._source: dict | None = None
        self._built: _VocabTable | None = None
        self._lock = threading.Lock()

    def vocab(self, k: Any, table: dict, value_dtype: np.dtype) -> _VocabTable:
        with self._lock:
            if self._source is not table or self._built is None:
                self._built, self._source = _VocabTable(k, table, value_dtype), table
            return self._built

    def __call__(self, k, filename, keys, default, *, table, **attrs):
        if not isinstance(keys, Utf8Strings) or default.size == 0:
            return None
        dtype = attrs["value_dtype"].np_dtype
        vocab = self.vocab(k, table, dtype)
        if not vocab.ok:
            return None
        out = np.empty(keys.starts.shape[0], dtype=dtype)
        k.find(keys.fingerprints(k), keys.data, keys.starts, keys.ends, vocab.slot_fp, vocab.slot_entry, vocab.data,
               vocab.starts, vocab.ends, vocab.values, np.asarray(default, dtype).reshape(-1)[0], out)
        return out.reshape(keys.shape)


# -- the plan rewrite -------------------------------------------------------------------------------------
def _capabilities(node: Any) -> tuple[frozenset[int], frozenset[int]] | None:
    """(input positions that take a buffer, output positions that can be one) of a step's node."""
    op = node.op
    if op in ("TfStaticRegexReplace", "TfStringLower"):
        return frozenset({0}), frozenset({0})
    if op == "TfStringSplit":
        return frozenset({0}), frozenset({1})
    if op == "TfStringToHashBucketFast":
        return frozenset({0}), frozenset()
    if op == "TfTextFileTableLookup" and node.attrs["key_dtype"] is string and node.attrs["value_dtype"] is not string:
        return frozenset({1}), frozenset()
    return None


def _fast_kernel(op: str) -> Callable[..., Any]:
    if op == "TfStaticRegexReplace":
        return _regex_fast
    if op == "TfStringLower":
        return _lower_fast
    if op == "TfStringSplit":
        return _split_fast
    if op == "TfStringToHashBucketFast":
        return _hash_bucket_fast
    return _Lookup()


def buffer_text_steps(steps: list, keep: set[int]) -> tuple[list, int]:
    """Rewrites the string steps of ``steps`` (``(fn, kwargs, ins, outs, node)``) to pass buffers where every
    reader of a string slot takes one and the slot is not in ``keep`` (fetched or fed).

    Returns:
        (the steps, how many were rewritten).
    """
    caps = [_capabilities(step[4]) for step in steps]
    if all(c is None for c in caps) or kernels() is None:  # no string op: numba is not even imported
        return steps, 0
    readers: dict[int, list[tuple[int, int]]] = {}
    for i, step in enumerate(steps):
        for pos, s in enumerate(step[2]):
            readers.setdefault(s, []).append((i, pos))
    emit: dict[int, set[int]] = {}
    for i, (step, cap) in enumerate(zip(steps, caps)):
        if cap is None:
            continue
        for pos in cap[1]:
            s = step[3][pos]
            users = readers.get(s, [])
            if s not in keep and users and all(caps[j] is not None and p in caps[j][0] for j, p in users):  # type: ignore[index]
                emit.setdefault(i, set()).add(pos)
                for j, _ in users:
                    emit.setdefault(j, set())
    out = list(steps)
    for i, outputs in emit.items():
        fn, kwargs, ins, outs, node = steps[i]
        out[i] = (BufferedStep(node.op, fn, _fast_kernel(node.op), frozenset(outputs)), kwargs, ins, outs, node)
    return out, len(emit)
