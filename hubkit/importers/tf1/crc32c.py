"""CRC-32C (Castagnoli), as LevelDB tables and TensorFlow tensor bundles store it.

Python has no CRC-32C built in (``zlib.crc32`` is the IEEE polynomial). With Numba, inputs of
:data:`NUMBA_MIN_BYTES` or more run a slicing-by-16 kernel (sixteen table lookups per 16 bytes, no carried
dependency between them; ~1-2 GB/s, :func:`fast`). Without it, short inputs go byte by byte and long
ones are cut into equal lanes whose registers advance together (one vectorised table lookup per byte
position), then the lane results are merged pairwise with the GF(2) "append n zero bytes" matrix, so
the cost is a few NumPy passes over the data instead of a Python loop per byte (~60 MB/s).
"""

from __future__ import annotations

import sys

import numpy as np

from hubkit.ops import _numba

__all__ = ["crc32c", "fast", "mask", "unmask"]

_POLY = 0x82F63B78  # reflected Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_SMALL = 4096
NUMBA_MIN_BYTES = 256  # below this a Numba call's dispatch costs more than the bytes


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_POLY), table >> 1).astype(np.uint32)
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(x) for x in _TABLE]


def _make_tables() -> np.ndarray:
    """``tables[k][b]``: the CRC register after byte ``b`` followed by ``k`` zero bytes (slicing-by-16)."""
    tables = np.zeros((16, 256), dtype=np.uint32)
    tables[0] = _TABLE
    for k in range(1, 16):
        prev = tables[k - 1]
        tables[k] = (prev >> np.uint32(8)) ^ _TABLE[prev & np.uint32(0xFF)]
    return tables


_TABLES = _make_tables()


def update_sliced(reg, words, tail, t):
    """Numba kernel: the register ``reg`` advanced over the little-endian uint64 ``words`` 16 bytes a step
    (slicing-by-16: sixteen independent lookups), then over the uint8 ``tail``."""
    crc = np.uint64(reg)
    m = np.uint64(0xFF)
    n = words.shape[0]
    j = 0
    while j + 2 <= n:
        a = words[j] ^ crc
        b = words[j + 1]
        crc = np.uint64(
            t[15, a & m] ^ t[14, (a >> np.uint64(8)) & m] ^ t[13, (a >> np.uint64(16)) & m]
            ^ t[12, (a >> np.uint64(24)) & m] ^ t[11, (a >> np.uint64(32)) & m] ^ t[10, (a >> np.uint64(40)) & m]
            ^ t[9, (a >> np.uint64(48)) & m] ^ t[8, a >> np.uint64(56)]
            ^ t[7, b & m] ^ t[6, (b >> np.uint64(8)) & m] ^ t[5, (b >> np.uint64(16)) & m]
            ^ t[4, (b >> np.uint64(24)) & m] ^ t[3, (b >> np.uint64(32)) & m] ^ t[2, (b >> np.uint64(40)) & m]
            ^ t[1, (b >> np.uint64(48)) & m] ^ t[0, b >> np.uint64(56)])
        j += 2
    if j < n:
        a = words[j] ^ crc
        crc = np.uint64(
            t[7, a & m] ^ t[6, (a >> np.uint64(8)) & m] ^ t[5, (a >> np.uint64(16)) & m]
            ^ t[4, (a >> np.uint64(24)) & m] ^ t[3, (a >> np.uint64(32)) & m] ^ t[2, (a >> np.uint64(40)) & m]
            ^ t[1, (a >> np.uint64(48)) & m] ^ t[0, a >> np.uint64(56)])
    for i in range(tail.shape[0]):
        crc = np.uint64(t[0, (crc ^ np.uint64(tail[i])) & m]) ^ (crc >> np.uint64(8))
    return crc


def _kernel(size: int):
    if size < NUMBA_MIN_BYTES or sys.byteorder != "little":
        return None
    return _numba.kernel(update_sliced)


def fast() -> bool:
    """Whether long inputs run the Numba kernel (numba importable and not switched off)."""
    return _kernel(NUMBA_MIN_BYTES) is not None


def _update_bytes(reg: int, data: bytes | memoryview) -> int:
    table = _TABLE_LIST
    for b in bytes(data):
        reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _zeros_operator(n: int) -> np.ndarray:
    """Columns of the 32x32 GF(2) matrix mapping a register to the register after ``n`` zero bytes."""
    one = np.array([_TABLE_LIST[(1 << j) & 0xFF] ^ ((1 << j) >> 8) for j in range(32)], dtype=np.uint32)
    result = np.array([1 << j for j in range(32)], dtype=np.uint32)  # identity
    power = one
    while n:
        if n & 1:
            result = _apply(power, result)
        power = _apply(power, power)
        n >>= 1
    return result


def _apply(columns: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``columns`` applied to every register in ``x`` (uint32 array)."""
    out = np.zeros_like(x)
    for j in range(32):
        out ^= np.where((x >> np.uint32(j)) & np.uint32(1), columns[j], np.uint32(0))
    return out


def _update_lanes(reg: int, data: np.ndarray) -> int:
    lane = 1024 if len(data) >= 1 << 20 else 64
    lanes = len(data) // lane
    width = 1 << (lanes - 1).bit_length()  # pad to a power of two with leading all-zero lanes (they add nothing)
    block = np.zeros((lane, width), dtype=np.uint8)
    block[:, width - lanes:] = data[: lanes * lane].reshape(lanes, lane).T
    regs = np.zeros(width, dtype=np.uint32)
    low = regs.view(np.uint8)[0::4] if sys.byteorder == "little" else regs.view(np.uint8)[3::4]  # low bytes
    index = np.empty(width, dtype=np.uint8)
    looked_up = np.empty(width, dtype=np.uint32)
    for row in block:
        np.bitwise_xor(low, row, out=index)
        np.right_shift(regs, 8, out=regs)
        np.take(_TABLE, index, out=looked_up)
        regs ^= looked_up
    span = lane
    while len(regs) > 1:
        regs = _apply(_zeros_operator(span), regs[0::2]) ^ regs[1::2]
        span *= 2
    reg = int(_apply(_zeros_operator(lanes * lane), np.array([reg], dtype=np.uint32))[0]) ^ int(regs[0])
    return _update_bytes(reg, data[lanes * lane:].tobytes())


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """The CRC-32C of ``data``, continuing from the value ``crc`` (0 to start)."""
    reg = crc ^ 0xFFFFFFFF
    if isinstance(data, np.ndarray):
        arr = data.reshape(-1).view(np.uint8)
    else:
        arr = np.frombuffer(data, dtype=np.uint8)
    kernel = _kernel(len(arr))
    if kernel is not None:
        arr = np.asarray(arr).view(np.ndarray)  # a memmap slice: Numba takes plain arrays
        cut = len(arr) - len(arr) % 8
        reg = int(kernel(reg, arr[:cut].view(np.uint64), arr[cut:], _TABLES))
    elif len(arr) < _SMALL:
        reg = _update_bytes(reg, arr.tobytes())
    else:
        reg = _update_lanes(reg, arr)
    return reg ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """LevelDB's masked CRC (stored so that a CRC of data holding CRCs stays well distributed)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
