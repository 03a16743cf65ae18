"""Vocabulary files, the stable out-of-vocabulary fingerprint, and tokenize-and-lookup kernels.

A vocabulary file holds one token per line (UTF-8, ``\\n`` or ``\\r\\n`` line ends); a token's id is
its line number from 0. When a token appears twice, its first line wins. A leading UTF-8 byte-order
mark (``EF BB BF``, as some editors on Windows write) is not part of the first token.

Out-of-vocabulary tokens are hashed into ``num_oov_buckets`` extra ids with FNV-1a 64 over the
token's UTF-8 bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3, arithmetic mod 2**64):
``id = vocab_size + fnv1a64(token) % num_oov_buckets``. Unlike Python's ``hash()`` this does not
depend on the process (``PYTHONHASHSEED``), the machine or the Python version.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from itertools import chain, repeat
from typing import Any

import numpy as np

from hubkit.errors import OpError
from hubkit.ops import _numba, _numba_kernels, _vocab_numpy

__all__ = ["Vocabulary", "fingerprint64", "load_vocabulary", "tokenize_and_lookup"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF
_UTF8_BOM = b"\xef\xbb\xbf"

# What `strip_punctuation` removes: characters that are neither word characters nor whitespace.
PUNCTUATION = re.compile(r"[^\w\s]")


def fingerprint64(token: str) -> int:
    """FNV-1a 64 of the UTF-8 bytes of ``token``: the same value in every process and on every machine.

    >>> fingerprint64("")
    14695981039346656037
    >>> hex(fingerprint64("a"))
    '0xaf63dc4c8601ec8c'
    """
    h, prime, mask = _FNV_OFFSET, _FNV_PRIME, _MASK64
    for b in token.encode("utf-8"):
        h = ((h ^ b) * prime) & mask
    return h


class Vocabulary:
    """The tokens of one vocabulary file, with a dict for the NumPy path and a hash table for Numba's.

    Attributes:
        path: the file it was read from.
        size: the number of lines (ids ``0 .. size - 1``).
    """

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        if data.startswith(_UTF8_BOM):
            data = data[len(_UTF8_BOM) :]
        data = data.replace(b"\r\n", b"\n")
        if data.endswith(b"\n"):
            data = data[:-1]
        try:
            words = data.decode("utf-8").split("\n") if data else []
        except UnicodeDecodeError as e:
            raise OpError(f"Vocabulary file {path!r} is not UTF-8 text: {e}.") from None
        self.size = len(words)
        # dict() keeps the last of equal keys; feeding it backwards makes the first line win.
        self.ids: dict[str, int] = dict(zip(reversed(words), range(self.size - 1, -1, -1)))
        self._data = data
        self._table: tuple[np.ndarray, np.ndarray] | None = None
        self._key_table: _vocab_numpy.KeyTable | None = None
        self._lock = threading.Lock()

    def lookup(self, tokens: list[str], num_oov_buckets: int, default_value: int) -> np.ndarray:
        """int64 ids of ``tokens``: the line number, else an OOV bucket, else ``default_value``."""
        found = list(map(self.ids.get, tokens, repeat(-1)))
        if -1 in found:  # a C-speed scan: cheaper than NumPy calls on a sentence's few tokens
            if num_oov_buckets > 0:
                size = self.size
                try:
                    found = [i if i >= 0 else size + fingerprint64(t) % num_oov_buckets for i, t in zip(found, tokens)]
                except UnicodeEncodeError:
                    raise _unencodable(tokens) from None
            else:
                found = [i if i >= 0 else default_value for i in found]
        return np.array(found, dtype=np.int64)

    def numba_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(slots, vocabulary bytes) for the Numba kernels, built once."""
        table = self._table
        if table is None:
            with self._lock:
                if self._table is None:
                    self._table = self._build_table()
                table = self._table
        return table

    def key_table(self) -> _vocab_numpy.KeyTable:
        """The table of the vectorised NumPy kernel, built once."""
        table = self._key_table
        if table is None:
            with self._lock:
                if self._key_table is None:
                    self._key_table = _vocab_numpy.KeyTable(self._data)
                table = self._key_table
        return table

    def _build_table(self) -> tuple[np.ndarray, np.ndarray]:
        vocab_bytes = np.frombuffer(self._data, dtype=np.uint8)
        lengths = np.fromiter(map(len, self._data.split(b"\n")), np.int64) if self.size else np.zeros(0, np.int64)
        starts = np.zeros(self.size, np.int64)
        if self.size:
            np.cumsum(lengths[:-1] + 1, out=starts[1:])
        capacity = 1 << max(4, int(2 * self.size).bit_length())
        slots = np.zeros((capacity, 4), np.uint64)
        build = _numba.kernel(_numba_kernels.build_vocab_table)
        if build is None:
            raise RuntimeError("The vocabulary hash table is only used by the Numba kernels.")
        build(vocab_bytes, starts, lengths, slots)
        return slots, vocab_bytes


class UnencodableTokenError(OpError):
    """A token holding a lone surrogate, which has no UTF-8 bytes to hash into an OOV bucket.

    Attributes:
        position: the token's index in the flat list of looked-up tokens.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


def _describe_unencodable(token: str) -> str:
    at = next(k for k, ch in enumerate(token) if 0xD800 <= ord(ch) <= 0xDFFF)
    return (
        f"{token!r} holds the lone surrogate {token[at]!r} at character {at}, which is not valid Unicode "
        "text and has no UTF-8 bytes to hash into an out-of-vocabulary bucket (decode the text with a "
        "proper codec, or without errors='surrogateescape')"
    )


def _unencodable(tokens: list[str]) -> UnencodableTokenError:
    position = next(k for k, t in enumerate(tokens) if not _encodable(t))
    return UnencodableTokenError(f"Token {position} {_describe_unencodable(tokens[position])}.", position)


def _encodable(token: str) -> bool:
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_vocabulary(path: str, cache: dict[Any, Vocabulary] | None = None) -> Vocabulary:
    """Reads the vocabulary file at ``path``; ``cache`` (keyed by path, mtime and size) avoids re-reading.

    Raises:
        OpError: the file is missing, unreadable or not UTF-8.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise OpError(f"Cannot read vocabulary file {path!r}: {e.strerror or e}.") from None
    key = (path, st.st_mtime_ns, st.st_size)
    if cache is not None and key in cache:
        return cache[key]

    if not stat.S_ISREG(st.st_mode):  # an asset that is a FIFO would block, /dev/zero never end
        what = "Is a directory" if stat.S_ISDIR(st.st_mode) else "it is not a regular file (a FIFO or device)"
        raise OpError(f"Cannot read vocabulary file {path!r}: {what}.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped for a FIFO or device since the stat
                raise OpError(f"Cannot read vocabulary file {path!r}: it is not a regular file.")
            os.set_blocking(fd, True)
            data = f.read()
    except OSError as e:
        raise OpError(f"Cannot read vocabulary file {path!r}: {e.strerror or e}.") from None
    vocab = Vocabulary(path, data)
    if cache is not None:
        cache.clear()  # one table per path and version is enough; older versions are dead weight
        cache[key] = vocab
    return vocab


# Below this many bytes a batch is tokenized by str.split and dict lookups: the vectorised kernel's
# fixed cost of some 50 NumPy calls only pays off on larger batches.
VECTORIZED_MIN_BYTES = 2048


def normalize(sentences: list[str], lower: bool, strip_punctuation: bool) -> list[str]:
    """Lower-cases and/or deletes punctuation, as the fused op does before splitting."""
    if lower:
        sentences = [s.lower() for s in sentences]
    if strip_punctuation:
        sub = PUNCTUATION.sub
        sentences = [sub("", s) for s in sentences]
    return sentences


def tokenize_and_lookup(
    sentences: np.ndarray,
    vocab: Vocabulary,
    *,
    lower: bool,
    strip_punctuation: bool,
    num_oov_buckets: int,
    default_value: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, row ids, number of rows) of the whitespace tokens of each sentence of a 1-D string array."""
    items = sentences.tolist()
    n = len(items)
    fast = _numba.kernel(_numba_kernels.tokenize_lookup)
    if fast is not None or n > 1:
        joined = "\n".join(items)
        # isascii() is O(1) in CPython; in ASCII text bytes are characters, so offsets are lengths.
        if joined.isascii():
            if fast is not None:
                return _tokenize_lookup_ascii(
                    fast, joined, items, vocab, lower, strip_punctuation, num_oov_buckets, default_value
                )
            if len(joined) >= VECTORIZED_MIN_BYTES:
                ids, row_ids = _vocab_numpy.tokenize_lookup_ascii(
                    joined.encode("ascii"), np.fromiter(map(len, items), dtype=np.int64, count=n),
                    vocab.key_table(), lambda tokens: vocab.lookup(tokens, num_oov_buckets, default_value),
                    lower=lower, strip=strip_punctuation, vocab_size=vocab.size, num_oov_buckets=num_oov_buckets,
                    default_value=default_value,
                )
                return ids, row_ids, np.array(n, dtype=np.int64)
    items = normalize(items, lower, strip_punctuation)
    if n == 1:
        tokens = items[0].split()
        try:
            ids = vocab.lookup(tokens, num_oov_buckets, default_value)
        except UnencodableTokenError as e:
            raise _in_sentence(e, tokens, 0, e.position) from None
        return ids, np.zeros(ids.size, dtype=np.int64), np.array(1, dtype=np.int64)
    parts = [s.split() for s in items]
    counts = np.fromiter(map(len, parts), dtype=np.int64, count=n)
    tokens = list(chain.from_iterable(parts))
    try:
        ids = vocab.lookup(tokens, num_oov_buckets, default_value)
    except UnencodableTokenError as e:
        row = int(np.searchsorted(np.cumsum(counts), e.position, side="right"))
        raise _in_sentence(e, tokens, row, e.position - int(counts[:row].sum())) from None
    row_ids = np.repeat(np.arange(n, dtype=np.int64), counts)
    return ids, row_ids, np.array(n, dtype=np.int64)


def _in_sentence(e: UnencodableTokenError, tokens: list[str], row: int, index: int) -> UnencodableTokenError:
    token = tokens[e.position]
    return UnencodableTokenError(f"Sentence {row}, token {index}: {_describe_unencodable(token)}.", e.position)


def _tokenize_lookup_ascii(fast, joined, items, vocab, lower, strip, num_oov_buckets, default_value):
    n = len(items)
    buf = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    sizes = np.fromiter(map(len, items), dtype=np.int64, count=n)
    slots, vocab_bytes = vocab.numba_table()
    most = buf.size // 2 + 1  # tokens are separated by at least one byte
    work = np.empty((5, most), np.int64)  # ids, rows, hashes (as uint64), token starts, token lengths
    count = fast(
        buf, sizes, lower, strip, slots, vocab_bytes, vocab.size, num_oov_buckets, default_value,
        np.empty(buf.size, np.uint8), work,
    )
    return work[0, :count], work[1, :count], np.array(n, dtype=np.int64)
