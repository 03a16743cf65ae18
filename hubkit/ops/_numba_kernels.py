"""Plain Python functions written for ``numba.njit``; :func:`hubkit.ops._numba.kernel` compiles them.

This module imports only NumPy: the functions are compiled on first use, never at import. Each one
has a NumPy counterpart in the op family that calls it, and the test suite runs both and compares.
"""

from __future__ import annotations

import numpy as np

# FNV-1a, 64-bit: the stable token fingerprint (same constants as hubkit.ops._vocab).
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)

SUM, MEAN, SQRTN = 0, 1, 2


# -- sparse embedding combiners --------------------------------------------------------------------
def sparse_combine(params, ids, row_ids, weights, has_weights, combiner, out, den):
    """``out[r] = sum_m w_m params[ids_m] / norm_r`` over tokens m of row r; ids < 0 are skipped.

    ``out`` (zeros, [num_rows, D]) and ``den`` (zeros, float64 [num_rows]) are filled in place.
    Returns -1, or the position of the first id >= len(params) or row id outside ``out``.
    """
    vocab, dim = params.shape
    num_rows = out.shape[0]
    for m in range(ids.shape[0]):
        i = ids[m]
        if i < 0:
            continue
        r = row_ids[m]
        if i >= vocab or r < 0 or r >= num_rows:
            return m
        if has_weights:
            w = weights[m]
            for d in range(dim):
                out[r, d] += w * params[i, d]
            den[r] += w * w if combiner == SQRTN else w
        else:
            for d in range(dim):
                out[r, d] += params[i, d]
            den[r] += 1.0
    if combiner != SUM:
        for r in range(num_rows):
            s = den[r]
            if combiner == SQRTN:
                s = np.sqrt(s)
            if s > 0.0:
                inv = out.dtype.type(1.0 / s)
                for d in range(dim):
                    out[r, d] *= inv
    return -1


def sparse_combine_grad(grad, ids, row_ids, weights, has_weights, combiner, den, values, indices):
    """Gradient rows of :func:`sparse_combine`: ``values[k] = grad[row] * w / norm_row`` for valid ids.

    ``den`` (zeros, float64 [num_rows]) is scratch; ``values`` [M, D] and ``indices`` [M] receive the
    rows of the ids >= 0, in order. Returns how many rows were written.
    """
    dim = grad.shape[1]
    for m in range(ids.shape[0]):
        if ids[m] < 0:
            continue
        w = weights[m] if has_weights else 1.0
        den[row_ids[m]] += w * w if combiner == SQRTN else w
    k = 0
    for m in range(ids.shape[0]):
        i = ids[m]
        if i < 0:
            continue
        r = row_ids[m]
        w = weights[m] if has_weights else 1.0
        scale = w
        if combiner != SUM:
            s = den[r]
            if combiner == SQRTN:
                s = np.sqrt(s)
            scale = w / s if s > 0.0 else 0.0
        sc = values.dtype.type(scale)
        for d in range(dim):
            values[k, d] = grad[r, d] * sc
        indices[k] = i
        k += 1
    return k


# -- vocabulary tables and tokenization ---------------------------------------------------------
# Numba calls only compiled functions, so the hash-table probe is written out in both kernels below.
def build_vocab_table(vocab_bytes, starts, lengths, slot_hash, slot_id):
    """Inserts every vocabulary entry into an open-addressing table (the first of duplicates wins)."""
    mask = np.uint64(slot_hash.shape[0] - 1)
    for i in range(starts.shape[0]):
        s = starts[i]
        n = lengths[i]
        h = FNV_OFFSET
        for j in range(n):
            h = (h ^ np.uint64(vocab_bytes[s + j])) * FNV_PRIME
        slot = np.int64(h & mask)
        duplicate = False
        while slot_id[slot] >= 0:
            other = slot_id[slot]
            if slot_hash[slot] == h and lengths[other] == n:
                same = True
                for j in range(n):
                    if vocab_bytes[s + j] != vocab_bytes[starts[other] + j]:
                        same = False
                        break
                if same:
                    duplicate = True
                    break
            slot = (slot + 1) & np.int64(mask)
        if not duplicate:
            slot_hash[slot] = h
            slot_id[slot] = i


def tokenize_lookup(
    buf, offsets, sizes, char_class, lower, strip, slot_hash, slot_id, vocab_bytes, starts, lengths,
    vocab_size, num_oov, default, scratch, out_ids, out_rows,
):
    """Splits each ASCII sentence ``buf[offsets[r]:offsets[r] + sizes[r]]`` on whitespace and looks up ids.

    ``char_class`` maps a byte to 0 (token character), 1 (whitespace) or 2 (punctuation, dropped
    when ``strip``); ``lower`` lower-cases A-Z. Writes ids and sentence numbers to ``out_ids`` and
    ``out_rows`` and returns how many tokens there were.
    """
    mask = np.uint64(slot_hash.shape[0] - 1)
    n = 0
    for r in range(offsets.shape[0]):
        p = offsets[r]
        end = p + sizes[r]
        length = 0
        h = FNV_OFFSET
        while p <= end:
            c = 1
            b = 0
            if p < end:
                b = buf[p]
                c = char_class[b]
            p += 1
            if c == 1:
                if length > 0:
                    found = -1
                    slot = np.int64(h & mask)
                    while slot_id[slot] >= 0:
                        sid = slot_id[slot]
                        if slot_hash[slot] == h and lengths[sid] == length:
                            same = True
                            for j in range(length):
                                if scratch[j] != vocab_bytes[starts[sid] + j]:
                                    same = False
                                    break
                            if same:
                                found = sid
                                break
                        slot = (slot + 1) & np.int64(mask)
                    if found < 0:
                        found = vocab_size + np.int64(h % np.uint64(num_oov)) if num_oov > 0 else default
                    out_ids[n] = found
                    out_rows[n] = r
                    n += 1
                    length = 0
                    h = FNV_OFFSET
                continue
            if c == 2 and strip:
                continue
            if lower and 65 <= b <= 90:
                b += 32
            scratch[length] = b
            length += 1
            h = (h ^ np.uint64(b)) * FNV_PRIME
    return n
