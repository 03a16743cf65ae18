"""Numba kernels of the TF string pipeline over one UTF-8 buffer (see :mod:`hubkit.ops.tf_text_buffers`).

A batch of strings is one ``uint8`` buffer with ``starts``/``ends`` byte offsets per string. The kernels here
split it into token offsets, rewrite character classes, hash tokens with FarmHash ``Fingerprint64`` (bit-exact
with :mod:`hubkit.ops._farmhash`, hence with TensorFlow) and probe an open-addressing table of a vocabulary's
fingerprints, verifying the bytes on a hit. Also the integer ``Unique`` and the sorted sparse segment sums of
``embedding_lookup_sparse``.

Unlike :mod:`hubkit.ops._numba_kernels` this module imports numba at its top (its kernels call compiled helpers),
so it is imported only when a kernel is first needed and Numba is enabled: :func:`load` returns it, or None.
"""

from __future__ import annotations

import numba
import numpy as np

from hubkit.ops import _numba

if not numba.config.CACHE_DIR:  # type: ignore[attr-defined]
    numba.config.CACHE_DIR = _numba.cache_dir()  # type: ignore[attr-defined]

_jit = numba.njit(cache=True, nogil=True)
_inline = numba.njit(cache=True, nogil=True, inline="always")  # a call costs ~20 ns: more than a short hash

K0 = np.uint64(0xC3A5C85C97CB3127)
K1 = np.uint64(0xB492B66FBE98F273)
K2 = np.uint64(0x9AE16A3B2F90404F)
U8 = np.uint64(8)
U47 = np.uint64(47)


# -- FarmHash Fingerprint64 (farmhashna) ---------------------------------------------------------------
@_inline
def _f64(d, i):
    v = np.uint64(0)
    for k in range(7, -1, -1):
        v = (v << U8) | np.uint64(d[i + k])
    return v


@_inline
def _f32(d, i):
    v = np.uint64(0)
    for k in range(3, -1, -1):
        v = (v << U8) | np.uint64(d[i + k])
    return v


@_inline
def _rot(v, s):
    return (v >> np.uint64(s)) | (v << np.uint64(64 - s))


@_inline
def _len16(u, v, mul):
    a = (u ^ v) * mul
    a ^= a >> U47
    b = (v ^ a) * mul
    b ^= b >> U47
    return b * mul


@_inline
def _weak32(d, i, a, b):
    w = _f64(d, i)
    x = _f64(d, i + 8)
    y = _f64(d, i + 16)
    z = _f64(d, i + 24)
    a = a + w
    b = _rot(b + a + z, 21)
    c = a
    a = a + x + y
    b = b + _rot(a, 44)
    return a + z, b + c


@_inline
def fingerprint64(d, s, n):
    """FarmHash Fingerprint64 of ``d[s:s + n]`` (a uint8 array) as a uint64."""
    if n <= 16:
        if n >= 8:
            mul = K2 + np.uint64(n) * np.uint64(2)
            a = _f64(d, s) + K2
            b = _f64(d, s + n - 8)
            c = _rot(b, 37) * mul + a
            dd = (_rot(a, 25) + b) * mul
            return _len16(c, dd, mul)
        if n >= 4:
            mul = K2 + np.uint64(n) * np.uint64(2)
            a = _f32(d, s)
            return _len16(np.uint64(n) + (a << np.uint64(3)), _f32(d, s + n - 4), mul)
        if n > 0:
            a = np.uint64(d[s])
            b = np.uint64(d[s + (n >> 1)])
            c = np.uint64(d[s + n - 1])
            y = (a + (b << U8)) & np.uint64(0xFFFFFFFF)
            z = (np.uint64(n) + (c << np.uint64(2))) & np.uint64(0xFFFFFFFF)
            h = (y * K2) ^ (z * K0)
            return (h ^ (h >> U47)) * K2
        return K2
    if n <= 32:
        mul = K2 + np.uint64(n) * np.uint64(2)
        a = _f64(d, s) * K1
        b = _f64(d, s + 8)
        c = _f64(d, s + n - 8) * mul
        dd = _f64(d, s + n - 16) * K2
        return _len16(_rot(a + b, 43) + _rot(c, 30) + dd, a + _rot(b + K2, 18) + c, mul)
    if n <= 64:
        mul = K2 + np.uint64(n) * np.uint64(2)
        a = _f64(d, s) * K2
        b = _f64(d, s + 8)
        c = _f64(d, s + n - 8) * mul
        dd = _f64(d, s + n - 16) * K2
        y = _rot(a + b, 43) + _rot(c, 30) + dd
        z = _len16(y, a + _rot(b + K2, 18) + c, mul)
        e = _f64(d, s + 16) * mul
        f = _f64(d, s + 24)
        g = (y + _f64(d, s + n - 32)) * mul
        h = (z + _f64(d, s + n - 24)) * mul
        return _len16(_rot(e + f, 43) + _rot(g, 30) + h, e + _rot(f + a, 18) + g, mul)
    seed = np.uint64(81)
    x = seed
    y = seed * K1 + np.uint64(113)
    z = y * K2 + np.uint64(113)
    z = (z ^ (z >> U47)) * K2
    v0 = np.uint64(0)
    v1 = np.uint64(0)
    w0 = np.uint64(0)
    w1 = np.uint64(0)
    x = x * K2 + _f64(d, s)
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        p = s + i
        x = _rot(x + y + v0 + _f64(d, p + 8), 37) * K1
        y = _rot(y + v1 + _f64(d, p + 48), 42) * K1
        x ^= w1
        y = y + v0 + _f64(d, p + 40)
        z = _rot(z + w0, 33) * K1
        v0, v1 = _weak32(d, p, v1 * K1, x + w0)
        w0, w1 = _weak32(d, p + 32, z + w1, y + _f64(d, p + 16))
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = K1 + ((z & np.uint64(0xFF)) << np.uint64(1))
    p = s + last64
    w0 = w0 + np.uint64((n - 1) & 63)
    v0 = v0 + w0
    w0 = w0 + v0
    x = _rot(x + y + v0 + _f64(d, p + 8), 37) * mul
    y = _rot(y + v1 + _f64(d, p + 48), 42) * mul
    x ^= w1 * np.uint64(9)
    y = y + v0 * np.uint64(9) + _f64(d, p + 40)
    z = _rot(z + w0, 33) * mul
    v0, v1 = _weak32(d, p, v1 * mul, x + w0)
    w0, w1 = _weak32(d, p + 32, z + w1, y + _f64(d, p + 16))
    z, x = x, z
    return _len16(_len16(v0, w0, mul) + (y ^ (y >> U47)) * K0 + z, _len16(v1, w1, mul) + x, mul)


@_jit
def fingerprints(data, starts, ends, out):
    """``out[k]`` = Fingerprint64 of token ``k`` (``data[starts[k]:ends[k]]``)."""
    for k in range(starts.shape[0]):
        out[k] = fingerprint64(data, starts[k], ends[k] - starts[k])


# -- a table of byte strings keyed by fingerprint ----------------------------------------------------
@_jit
def build_table(fps, key_data, key_starts, key_ends, slot_fp, slot_entry):
    """Inserts every key (entry ``i`` at ``slot_entry = i + 1``; 0 marks an empty slot); the first of equal keys
    wins. The capacity (a power of two) must exceed the number of keys."""
    mask = slot_entry.shape[0] - 1
    for i in range(fps.shape[0]):
        h = fps[i]
        slot = np.int64(h & np.uint64(mask))
        n = key_ends[i] - key_starts[i]
        while slot_entry[slot] != 0:
            other = slot_entry[slot] - 1
            if slot_fp[slot] == h and key_ends[other] - key_starts[other] == n:
                same = True
                for j in range(n):
                    if key_data[key_starts[i] + j] != key_data[key_starts[other] + j]:
                        same = False
                        break
                if same:
                    break
            slot = (slot + 1) & mask
        if slot_entry[slot] == 0:
            slot_fp[slot] = h
            slot_entry[slot] = i + 1


@_jit
def find(fps, data, starts, ends, slot_fp, slot_entry, key_data, key_starts, key_ends, values, default, out):
    """``out[k]`` = the value of token ``k``'s entry, or ``default``: probe by fingerprint, then compare bytes."""
    mask = slot_entry.shape[0] - 1
    for k in range(fps.shape[0]):
        h = fps[k]
        slot = np.int64(h & np.uint64(mask))
        n = ends[k] - starts[k]
        found = -1
        while slot_entry[slot] != 0:
            if slot_fp[slot] == h:
                e = slot_entry[slot] - 1
                if key_ends[e] - key_starts[e] == n:
                    same = True
                    for j in range(n):
                        if data[starts[k] + j] != key_data[key_starts[e] + j]:
                            same = False
                            break
                    if same:
                        found = e
                        break
            slot = (slot + 1) & mask
        out[k] = values[found] if found >= 0 else default


# -- splitting and rewriting -------------------------------------------------------------------------
@_jit
def split(data, starts, ends, is_delim, each_byte, skip_empty, tok_starts, tok_ends, indices, count_only):
    """TF ``StringSplit`` of every string: tokens between delimiter bytes (``each_byte``: every byte is a
    token). Fills token offsets and ``indices`` (row, column) unless ``count_only``; returns (token count, the
    most tokens of a row)."""
    n = 0
    width = 0
    for r in range(starts.shape[0]):
        col = 0
        if each_byte:
            for p in range(starts[r], ends[r]):
                if not count_only:
                    tok_starts[n] = p
                    tok_ends[n] = p + 1
                    indices[n, 0] = r
                    indices[n, 1] = col
                col += 1
                n += 1
        elif starts[r] < ends[r] or not skip_empty:
            t = starts[r]
            end = ends[r]
            for p in range(starts[r], end + 1):
                if p == end or is_delim[data[p]]:
                    if p > t or not skip_empty:
                        if not count_only:
                            tok_starts[n] = t
                            tok_ends[n] = p
                            indices[n, 0] = r
                            indices[n, 1] = col
                        col += 1
                        n += 1
                    t = p + 1
        if col > width:
            width = col
    return n, width


@_jit
def byte_offsets(data, char_lengths, starts, ends):
    """Byte offsets of consecutive strings of ``char_lengths`` code points in the UTF-8 ``data``."""
    p = 0
    size = data.shape[0]
    for r in range(char_lengths.shape[0]):
        starts[r] = p
        left = char_lengths[r]
        while left > 0:
            p += 1
            while p < size and (data[p] & 0xC0) == 0x80:
                p += 1
            left -= 1
        ends[r] = p


@_inline
def _decode(data, p):
    """(code point, length) of the UTF-8 sequence at ``p`` (valid UTF-8 only)."""
    b = np.int64(data[p])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[p + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[p + 1]) & 0x3F) << 6) | (np.int64(data[p + 2]) & 0x3F), 3
    return (((b & 0x07) << 18) | ((np.int64(data[p + 1]) & 0x3F) << 12) | ((np.int64(data[p + 2]) & 0x3F) << 6)
            | (np.int64(data[p + 3]) & 0x3F)), 4


@_jit
def class_replace(data, starts, ends, member, runs, rewrite, out, out_starts, out_ends, unknown):
    """Replaces every character of the class (``member == 2``), or every run of them when ``runs``, by
    ``rewrite``, string by string (a match never crosses strings). Returns (bytes written, count of code points
    of unknown membership): when the count is not 0, those code points (``member == 0``, each listed once in
    ``unknown`` and marked 3) must be resolved and the call repeated. ASCII is always known."""
    q = 0
    m = rewrite.shape[0]
    u = 0
    for r in range(starts.shape[0]):
        out_starts[r] = q
        p = starts[r]
        end = ends[r]
        inside = False
        while p < end:
            b = data[p]
            if b < 0x80:
                c = np.int64(b)
                size = 1
            else:
                c, size = _decode(data, p)
                if member[c] == 0 or member[c] == 3:
                    if member[c] == 0:
                        member[c] = 3
                        unknown[u] = c
                        u += 1
                    p += size
                    continue
            if member[c] == 2:
                if not (runs and inside):
                    for j in range(m):
                        out[q + j] = rewrite[j]
                    q += m
                inside = True
            else:
                for j in range(size):
                    out[q + j] = data[p + j]
                q += size
                inside = False
            p += size
        out_ends[r] = q
    return q, u


@_jit
def lower_ascii(data, out):
    """``out`` = ``data`` with the bytes A-Z lowered (exact on UTF-8: multi-byte sequences are >= 0x80)."""
    for i in range(data.shape[0]):
        b = data[i]
        out[i] = b + 32 if 65 <= b <= 90 else b


@_jit
def max_byte(data):
    m = 0
    for i in range(data.shape[0]):
        if data[i] > m:
            m = data[i]
    return m


@_jit
def row_offsets(data, starts, ends):
    """Offsets of the rows of ``data`` joined by one 0 byte (none inside a row); ``starts``/``ends`` hold one
    entry per row."""
    r = 0
    starts[0] = 0
    for p in range(data.shape[0]):
        if data[p] == 0:
            ends[r] = p
            r += 1
            starts[r] = p + 1
    ends[r] = data.shape[0]


# -- integer Unique and sparse segment reductions ------------------------------------------------------------
@_jit
def unique(x, values, idx):
    """TF ``Unique`` of an integer vector: ``values`` in order of first occurrence (returns how many) and the
    position of each element in them."""
    n = x.shape[0]
    bits = 4
    while (1 << bits) < 2 * n:
        bits += 1
    cap = 1 << bits
    mask = cap - 1
    shift = np.uint64(64 - bits)
    slots = np.full(cap, -1, np.int64)
    count = 0
    for i in range(n):
        v = x[i]
        h = np.uint64(v) * np.uint64(0x9E3779B97F4A7C15)
        slot = np.int64(h >> shift)
        while True:
            u = slots[slot]
            if u < 0:
                slots[slot] = count
                values[count] = v
                idx[i] = count
                count += 1
                break
            if values[u] == v:
                idx[i] = u
                break
            slot = (slot + 1) & mask
    return count


@_jit
def segment_reduce(data, indices, segment_ids, mode, out):
    """``out[s]`` = sum of ``data[indices[m]]`` over ``segment_ids[m] == s``, scaled by 1 / count (``mode`` 1)
    or 1 / sqrt(count) (``mode`` 2); ``out`` starts zeroed, ``data`` is 2-D. Returns 0, or 1 when the ids are
    not sorted, 2 for an index outside ``data``, 3 for a segment id outside ``out`` (the caller raises)."""
    dim = data.shape[1]
    rows = out.shape[0]
    vocab = data.shape[0]
    total = indices.shape[0]
    for m in range(total):
        if m and segment_ids[m] < segment_ids[m - 1]:
            return 1
        if indices[m] < 0 or indices[m] >= vocab:
            return 2
        if segment_ids[m] < 0 or segment_ids[m] >= rows:
            return 3
    m = 0
    while m < total:
        s = segment_ids[m]
        start = m
        while m < total and segment_ids[m] == s:
            i = indices[m]
            for d in range(dim):
                out[s, d] += data[i, d]
            m += 1
        if mode != 0:
            c = out.dtype.type(m - start)  # as the NumPy path: 1 / count or 1 / sqrt(count) in the data's precision
            sc = out.dtype.type(1.0) / (c if mode == 1 else np.sqrt(c))
            for d in range(dim):
                out[s, d] *= sc
    return 0


@_jit
def fill_empty_rows(indices, values, rows, default, out_idx, out_val, empty, reverse):
    """TF ``SparseFillEmptyRows`` of entries whose rows do not decrease: the entries in order with
    ``[row, 0] = default`` inserted for each empty row. Returns the entries written, or -1 when a row goes
    backwards or out of range (the caller's general path handles or reports it)."""
    n = indices.shape[0]
    width = indices.shape[1]
    for r in range(rows):
        empty[r] = True
    q = 0
    nxt = 0  # the first row not yet reached
    for m in range(n):
        r = indices[m, 0]
        if r < 0 or r >= rows or r < nxt - 1:
            return -1
        while nxt < r:  # rows nxt .. r - 1 are empty
            out_idx[q, 0] = nxt
            for j in range(1, width):
                out_idx[q, j] = 0
            out_val[q] = default
            q += 1
            nxt += 1
        nxt = r + 1
        empty[r] = False
        for j in range(width):
            out_idx[q, j] = indices[m, j]
        out_val[q] = values[m]
        reverse[m] = q
        q += 1
    while nxt < rows:
        out_idx[q, 0] = nxt
        for j in range(1, width):
            out_idx[q, j] = 0
        out_val[q] = default
        q += 1
        nxt += 1
    return q
