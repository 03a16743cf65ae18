"""Vectorised NumPy tokenize-and-lookup of ASCII batches (the NumPy path's large-batch kernel).

A per-token ``dict.get`` costs several cache misses (the dict slot, the key string, the value's
int object) that the interpreter cannot overlap. This kernel instead works on the bytes of the
whole batch with a fixed number of NumPy operations:

1. classify every byte (:data:`hubkit.ops._numba_kernels.CHAR_CLASS`, the classes ``str.split``
   and the ``[^\\w\\s]`` pattern use on ASCII), drop punctuation, lower-case A-Z;
2. find token edges, and read each token of at most 16 bytes as an exact key: two little-endian
   uint64 words (zero past its end) and its length;
3. probe an open-addressing table of the vocabulary's keys (:class:`KeyTable`) for all tokens at
   once, a few linear-probing rounds, so the CPU overlaps the cache misses of different tokens;
4. hash the unknown tokens into OOV buckets with FNV-1a 64 computed column by column.

Tokens longer than 16 bytes (and the rare token still unresolved after the probing rounds) are
looked up in the vocabulary's dict, so the ids are exactly those of the per-token path.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops._numba_kernels import CHAR_CLASS

__all__ = ["KeyTable", "tokenize_lookup_ascii"]

KEY_BYTES = 16  # longer tokens are looked up in the dict
_PROBE_ROUNDS = 8  # vectorised probing rounds before the remaining tokens go to the dict

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX_1 = np.uint64(0x9E3779B97F4A7C15)  # odd constants of splitmix64 / Fibonacci hashing
_MIX_2 = np.uint64(0xBF58476D1CE4E5B9)

# _LOW_BYTES[n]: the mask keeping the first n bytes (n = 0..8) of a little-endian uint64 word.
_LOW_BYTES = np.array([(1 << (8 * n)) - 1 for n in range(9)], dtype=np.uint64)
_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32  # A-Z -> a-z; str.lower() on ASCII does exactly this
_IS_SPACE = CHAR_CLASS == 1
_IS_PUNCT = CHAR_CLASS == 2


def _words(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first 8 bytes, next 8 bytes) of each token as little-endian uint64, zero past its end.

    ``buf`` must be followed by at least 16 readable bytes (see :func:`_padded`).
    """
    # Every byte offset of buf viewed as the start of an (unaligned) uint64: no copy.
    windows = np.ndarray((buf.size - 7,), dtype="<u8", buffer=buf, strides=(1,))
    w0 = windows[starts] & _LOW_BYTES[np.minimum(lengths, 8)]
    w1 = windows[starts + 8] & _LOW_BYTES[np.clip(lengths - 8, 0, 8)]
    return w0, w1


def _padded(data: bytes | np.ndarray) -> np.ndarray:
    buf = np.zeros(len(data) + KEY_BYTES, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    return buf


def _home(w0: np.ndarray, w1: np.ndarray, lengths: np.ndarray, shift: np.uint64) -> np.ndarray:
    """Home slot of each key: a multiplicative hash, top bits (they depend on every input bit)."""
    h = (w1 * _MIX_2 + lengths.astype(np.uint64)) ^ w0
    h *= _MIX_1
    return (h >> shift).astype(np.int64)


class KeyTable:
    """Open-addressing (linear probing) table of the vocabulary tokens of 1..16 UTF-8 bytes.

    Row ``s`` of ``slots`` is ``(w0, w1, (id + 1) << 5 | length)``; a third word of 0 marks an
    empty slot. Lookups compare the whole key, so a hit is an exact match.
    """

    def __init__(self, lines: bytes) -> None:
        """Builds the table of ``lines`` (UTF-8, ``\\n``-separated); line ``i`` has id ``i``.

        Equal lines are all inserted, but the first one always sits earlier on their common probe
        sequence (an insertion round gives a contested slot to the lowest line), so it is found.
        """
        buf = np.frombuffer(lines, dtype=np.uint8)
        newlines = np.flatnonzero(buf == 10)
        starts = np.concatenate(([0], newlines + 1)) if buf.size else np.zeros(0, dtype=np.int64)
        lengths = (np.append(newlines, buf.size) if buf.size else starts) - starts
        ids = np.flatnonzero((lengths >= 1) & (lengths <= KEY_BYTES))
        starts, lengths = starts[ids], lengths[ids]
        w0, w1 = _words(_padded(buf), starts, lengths)
        meta = ((ids + 1) << 5 | lengths).astype(np.uint64)
        bits = max(4, int(4 * max(1, ids.size) - 1).bit_length())  # load factor <= 1/4: short probes
        self.mask = (1 << bits) - 1
        self.shift = np.uint64(64 - bits)
        self.slots = np.zeros((1 << bits, 3), dtype=np.uint64)
        slot = _home(w0, w1, lengths, self.shift)
        pending = np.arange(ids.size)
        owner = np.full(1 << bits, ids.size, dtype=np.int64)
        while pending.size:  # insert all keys at once, one probe step per round
            free = self.slots[slot, 2] == 0
            np.minimum.at(owner, slot[free], pending[free])  # a contested free slot goes to the lowest line
            placed = free & (owner[slot] == pending)
            taken, winners = slot[placed], pending[placed]
            self.slots[taken, 0] = w0[winners]
            self.slots[taken, 1] = w1[winners]
            self.slots[taken, 2] = meta[winners]
            pending, slot = pending[~placed], (slot[~placed] + 1) & self.mask

    def find(self, w0: np.ndarray, w1: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, unresolved): id of each key (-1 when absent), and the keys not settled by the rounds."""
        ids = np.full(w0.size, -1, dtype=np.int64)
        todo = np.arange(w0.size)
        slot = _home(w0, w1, lengths, self.shift)
        length_bits = lengths.astype(np.uint64)
        for _ in range(_PROBE_ROUNDS):
            if not todo.size:
                break
            rows = self.slots.take(slot, axis=0)  # one gather of 24-byte rows: the misses of all tokens overlap
            meta = rows[:, 2]
            hit = (rows[:, 0] == w0) & (rows[:, 1] == w1) & ((meta & np.uint64(31)) == length_bits)
            ids[todo[hit]] = (meta[hit] >> np.uint64(5)).astype(np.int64) - 1
            more = ~hit & (meta != 0)  # occupied by another key: try the next slot
            todo, slot = todo[more], (slot[more] + 1) & self.mask
            w0, w1, length_bits = w0[more], w1[more], length_bits[more]
        return ids, todo


def fnv1a64_keys(w0: np.ndarray, w1: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of each key's bytes (the same value as :func:`hubkit.ops._vocab.fingerprint64`)."""
    h = np.full(w0.size, _FNV_OFFSET, dtype=np.uint64)
    for j in range(int(lengths.max(initial=0))):
        word = w0 if j < 8 else w1
        byte = (word >> np.uint64(8 * (j % 8))) & np.uint64(0xFF)
        np.copyto(h, (h ^ byte) * _FNV_PRIME, where=lengths > j)
    return h


def tokenize_lookup_ascii(
    data: bytes, sizes: np.ndarray, table: KeyTable, dict_lookup, *, lower: bool, strip: bool,
    vocab_size: int, num_oov_buckets: int, default_value: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, row ids) of the whitespace tokens of ASCII sentences joined by one whitespace byte.

    Args:
        data: the sentences' bytes joined by one whitespace byte (``"\\n".join(...).encode()``).
        sizes: int64 length of each sentence.
        table: the vocabulary's :class:`KeyTable`.
        dict_lookup: ``f(list of str) -> int64 ids`` (the dict path) for long or unresolved tokens.
        lower, strip: lower-case A-Z; delete bytes that are neither word characters nor whitespace.
        vocab_size, num_oov_buckets, default_value: as in the vocabulary lookup.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    bounds = np.zeros(sizes.size, dtype=np.int64)  # where each sentence starts in buf
    if sizes.size > 1:
        np.cumsum(sizes[:-1] + 1, out=bounds[1:])
    if strip:
        keep = ~_IS_PUNCT[buf]
        kept_before = np.concatenate(([0], np.cumsum(keep)))
        bounds = kept_before[bounds]
        buf = buf[keep]
    if lower:
        buf = _LOWER[buf]
    is_token = np.zeros(buf.size + 2, dtype=bool)
    np.logical_not(_IS_SPACE[buf], out=is_token[1:-1])
    edges = np.flatnonzero(is_token[1:] != is_token[:-1])  # alternately a token's start and its end
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    rows = np.searchsorted(bounds, starts, side="right") - 1
    padded = _padded(buf)
    short = lengths <= KEY_BYTES
    all_short = bool(short.all())
    s_starts, s_lengths = (starts, lengths) if all_short else (starts[short], lengths[short])
    w0, w1 = _words(padded, s_starts, s_lengths)
    found, unresolved = table.find(w0, w1, s_lengths)
    missing = np.flatnonzero(found < 0)
    if unresolved.size:
        missing = np.setdiff1d(missing, unresolved, assume_unique=True)
    if missing.size:
        if num_oov_buckets > 0:
            h = fnv1a64_keys(w0[missing], w1[missing], s_lengths[missing])
            found[missing] = vocab_size + (h % np.uint64(num_oov_buckets)).astype(np.int64)
        else:
            found[missing] = default_value
    if unresolved.size:
        found[unresolved] = dict_lookup(_texts(padded, s_starts[unresolved], s_lengths[unresolved]))
    if all_short:
        return found, rows
    ids = np.empty(lengths.size, dtype=np.int64)
    ids[short] = found
    long = np.flatnonzero(~short)
    ids[long] = dict_lookup(_texts(padded, starts[long], lengths[long]))
    return ids, rows


def _texts(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    raw = buf.tobytes()
    return [raw[s : s + n].decode("ascii") for s, n in zip(starts.tolist(), lengths.tolist())]
