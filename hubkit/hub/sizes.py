"""Byte counts for people: ``1.8 KB`` rather than ``0.0 MB`` or ``1843 bytes``."""

from __future__ import annotations

from typing import Any

__all__ = ["format_size"]


def format_size(count: Any) -> str:
    """Formats a byte count with decimal units (1 KB = 1000 bytes), three significant digits at most.

    >>> [format_size(n) for n in (0, 1, 999, 1843, 52_000, 1_250_000, 3 * 10**9)]
    ['0 B', '1 B', '999 B', '1.8 KB', '52.0 KB', '1.2 MB', '3.0 GB']
    >>> format_size("12")
    '?'

    Args:
        count: A number of bytes; anything else (a malformed manifest's size) gives ``"?"``.
    """
    if isinstance(count, bool) or not isinstance(count, (int, float)) or not count >= 0 or count == float("inf"):
        return "?"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 999.5 or unit == "TB":
            if unit == "B":
                return f"{value:.0f} B"
            return f"{value:.1f} {unit}" if value < 99.95 else f"{value:.0f} {unit}"
        value /= 1000
    return "?"  # pragma: no cover  (the loop returns at "TB")
