"""What to run when a module in the cache turns out to be damaged (its files edited or truncated after install)."""

from __future__ import annotations

import os

from hubkit.format.bounded_io import read_json_file
from hubkit.hub.config import default_cache_dir

__all__ = ["cache_repair_hint"]

_MAX_DESCRIPTOR = 1 << 20


def cache_repair_hint(module_dir: str) -> str | None:
    """The sentence that ends an error about a damaged cached module: the command that removes the entry.

    Returns ``None`` when ``module_dir`` is not the module directory of an entry of the cache
    (``HUBKIT_CACHE_DIR`` or the per-user default).
    """
    try:
        cache_root = os.path.realpath(default_cache_dir())
        entry = os.path.dirname(os.path.realpath(module_dir))
        if os.path.basename(os.path.realpath(module_dir)) != "module" or os.path.dirname(entry) != cache_root:
            return None
    except (OSError, ValueError):
        return None
    handle = None
    # Untrusted (a shared cache): a regular file only, bounded; a FIFO planted there must not hang the hint.
    descriptor = read_json_file(os.path.join(entry, "descriptor.json"), _MAX_DESCRIPTOR, default=None)
    if isinstance(descriptor, dict):
        handle = descriptor.get("handle")
    remove = f"`hubkit cache rm {handle}`" if isinstance(handle, str) and handle.isprintable() else None
    return (f"This is a cached copy (in {entry!r}) that was modified or damaged after it was installed; "
            + (f"{remove} removes it, or " if remove else "")
            + "`hubkit cache prune --verify` removes every damaged entry; the next load downloads it again.")
