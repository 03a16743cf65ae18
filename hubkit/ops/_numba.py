"""Optional Numba kernels: compiled lazily on first use, cached on disk, chosen per op by measurement.

Nothing here imports numba when hubkit is imported; the first kernel call does. Numba is used when
it imports and ``HUBKIT_NUMBA`` is not ``0`` (or ``false``/``no``/``off``). Ops ask for a kernel with
:func:`kernel` and fall back to their NumPy code when it returns ``None``::

    fast = _numba.kernel(_numba_kernels.sparse_combine)
    if fast is not None:
        return fast(...)
    ...  # the NumPy kernel

Compiled machine code is cached in ``NUMBA_CACHE_DIR`` when that is set, else in
``<platformdirs.user_cache_dir("hubkit")>/numba``, so only the first process on a machine pays the
compile time.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["cache_dir", "kernel", "numba_enabled", "set_numba_enabled"]

_OFF_VALUES = ("0", "false", "no", "off")
_lock = threading.Lock()


class _State:
    enabled: bool | None = None  # None: not decided yet (read the environment on first use)
    forced: bool | None = None  # set by set_numba_enabled
    compiled: dict[Callable[..., Any], Callable[..., Any]] = {}


_STATE = _State()


def _detect() -> bool:
    if os.environ.get("HUBKIT_NUMBA", "1").strip().lower() in _OFF_VALUES:
        return False
    return importlib.util.find_spec("numba") is not None


def numba_enabled() -> bool:
    """Whether ops use their Numba kernels (numba importable and ``HUBKIT_NUMBA`` not ``0``)."""
    enabled = _STATE.enabled
    if enabled is None:
        enabled = _STATE.enabled = _detect() if _STATE.forced is None else _STATE.forced
    return enabled


def set_numba_enabled(flag: bool | None) -> bool:
    """Re-selects kernels: ``True``/``False`` forces the Numba or NumPy kernels, ``None`` re-reads the env.

    Ops consult the switch on every call, so the change applies to plans compiled before it too.
    Forcing ``True`` still falls back to NumPy when numba cannot be imported.

    Args:
        flag: True, False, or None to decide again from ``HUBKIT_NUMBA`` and whether numba imports.

    Returns:
        Whether Numba kernels are now enabled.
    """
    _STATE.forced = flag
    _STATE.enabled = None
    if flag and importlib.util.find_spec("numba") is None:
        _STATE.enabled = False
    return numba_enabled()


def cache_dir() -> str:
    """Where compiled kernels are cached: ``NUMBA_CACHE_DIR``, else a ``numba`` dir in hubkit's cache."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return configured
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("hubkit"), "numba")


def _compile(
    fn: Callable[..., Any], numpy_errors: bool = False, options: dict[str, Any] | None = None
) -> Callable[..., Any] | None:
    with _lock:
        done = _STATE.compiled.get(fn)
        if done is not None:
            return done
        try:
            import numba
        except Exception:  # numba present but broken (e.g. incompatible NumPy): use NumPy kernels
            _STATE.enabled = False
            return None
        # numba.config sets its attributes from the environment at run time: mypy cannot see them.
        if not numba.config.CACHE_DIR:  # type: ignore[attr-defined]
            # Read by numba's cache locator each time a function is compiled, so setting it here
            # (rather than in os.environ before import) is enough and leaves the environment alone.
            numba.config.CACHE_DIR = cache_dir()  # type: ignore[attr-defined]
        opts = dict(options or {})
        if numpy_errors:
            opts["error_model"] = "numpy"
        jitted = numba.njit(cache=True, nogil=True, **opts)(fn)
        _STATE.compiled[fn] = jitted
        return jitted


def kernel(fn: Callable[..., Any], numpy_errors: bool = False, **options: Any) -> Callable[..., Any] | None:
    """The compiled form of the numba-compatible Python function ``fn``, or None when Numba is off.

    ``options`` (e.g. ``fastmath``, ``parallel``) go to ``numba.njit`` too, from the first request,
    as ``numpy_errors`` does.

    Compilation happens on the first call for each ``fn`` (from the disk cache when possible); the
    argument types select the specialization, as with any ``numba.njit`` function. ``numpy_errors``
    compiles with Numba's NumPy error model: a float division by zero gives inf or nan, as NumPy's
    does, instead of raising, and loops that divide can vectorise (each ``fn`` is compiled once,
    with the flag of its first request).
    """
    if not numba_enabled():
        return None
    done = _STATE.compiled.get(fn)
    if done is not None:
        return done
    return _compile(fn, numpy_errors, options)
