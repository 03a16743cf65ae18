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

# Byte classes of the ASCII tokenizer, matching str.split() and the [^\w\s] punctuation pattern:
# 0 token character ([A-Za-z0-9_]), 1 whitespace (what str.isspace() accepts), 2 anything else.
# A global array is a compile-time constant to Numba, one argument less to unbox per call.
CHAR_CLASS = np.full(256, 2, dtype=np.int8)
for _b in range(128):
    if chr(_b).isspace():
        CHAR_CLASS[_b] = 1
    elif chr(_b).isalnum() or chr(_b) == "_":
        CHAR_CLASS[_b] = 0


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
# The table is one uint64 array [capacity, 4]; a slot holds (hash, id + 1, start, length) of an entry,
# id + 1 == 0 marking an empty slot. Keeping a slot in one cache line matters: a batch lookup runs
# right after the embedding gather has flushed the caches. Numba calls only compiled functions, so
# the probe is written out in both kernels below.
def build_vocab_table(vocab_bytes, starts, lengths, slots):
    """Inserts every vocabulary entry into an open-addressing table (the first of duplicates wins)."""
    mask = np.uint64(slots.shape[0] - 1)
    for i in range(starts.shape[0]):
        s = starts[i]
        n = lengths[i]
        h = FNV_OFFSET
        for j in range(n):
            h = (h ^ np.uint64(vocab_bytes[s + j])) * FNV_PRIME
        slot = np.int64(h & mask)
        duplicate = False
        while slots[slot, 1] != 0:
            if slots[slot, 0] == h and np.int64(slots[slot, 3]) == n:
                other = np.int64(slots[slot, 2])
                same = True
                for j in range(n):
                    if vocab_bytes[s + j] != vocab_bytes[other + j]:
                        same = False
                        break
                if same:
                    duplicate = True
                    break
            slot = (slot + 1) & np.int64(mask)
        if not duplicate:
            slots[slot, 0] = h
            slots[slot, 1] = np.uint64(i + 1)
            slots[slot, 2] = np.uint64(s)
            slots[slot, 3] = np.uint64(n)


def tokenize_lookup(buf, sizes, lower, strip, slots, vocab_bytes, vocab_size, num_oov, default, norm, work):
    """Splits ASCII sentences on whitespace and looks up the ids of their tokens.

    ``buf`` holds the sentences joined by one separator byte, ``sizes`` their lengths. Bytes are
    classified by ``CHAR_CLASS``: punctuation is dropped when ``strip``, A-Z lower-cased when
    ``lower``. Fills ``work[0]`` (ids) and ``work[1]`` (sentence of each id) and returns how many
    tokens there were; ``norm`` and ``work[2:]`` are scratch.

    Two passes: the first normalizes tokens into ``norm`` and hashes them (sequential memory), the
    second probes the table. The probes of different tokens do not depend on each other, so the
    CPU overlaps their cache misses, which a single interleaved pass prevents (measured ~2x).
    """
    out_ids = work[0]
    out_rows = work[1]
    token_hash = work[2]
    token_start = work[3]
    token_length = work[4]
    n = 0
    q = 0
    p = 0
    for r in range(sizes.shape[0]):
        end = p + sizes[r]
        length = 0
        h = FNV_OFFSET
        while p <= end:
            c = 1
            b = 0
            if p < end:
                b = buf[p]
                c = CHAR_CLASS[b]
            p += 1
            if c == 1:
                if length > 0:
                    token_hash[n] = np.int64(h)  # stored as int64 bits; compared as uint64 below
                    token_start[n] = q - length
                    token_length[n] = length
                    out_rows[n] = r
                    n += 1
                    length = 0
                    h = FNV_OFFSET
                continue
            if c == 2 and strip:
                continue
            if lower and 65 <= b <= 90:
                b += 32
            norm[q] = b
            q += 1
            length += 1
            h = (h ^ np.uint64(b)) * FNV_PRIME
    mask = np.uint64(slots.shape[0] - 1)
    for k in range(n):
        h = np.uint64(token_hash[k])
        ts = token_start[k]
        length = token_length[k]
        found = -1
        slot = np.int64(h & mask)
        while slots[slot, 1] != 0:
            if slots[slot, 0] == h and np.int64(slots[slot, 3]) == length:
                start = np.int64(slots[slot, 2])
                same = True
                for j in range(length):
                    if norm[ts + j] != vocab_bytes[start + j]:
                        same = False
                        break
                if same:
                    found = np.int64(slots[slot, 1]) - 1
                    break
            slot = (slot + 1) & np.int64(mask)
        if found < 0:
            found = vocab_size + np.int64(h % np.uint64(num_oov)) if num_oov > 0 else default
        out_ids[k] = found
    return n
