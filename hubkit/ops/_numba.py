"""Optional Numba kernels: compiled lazily on first use, cached on disk, chosen per op by measurement.

Nothing here imports numba when hubkit is imported; the first kernel call does. Numba is used when
it imports and ``HUBKIT_NUMBA`` is not ``0`` (or ``false``/``no``/``off``). Ops ask for a kernel with
:func:`kernel` and fall back to their NumPy code when it returns ``None``::

    fast = _numba.kernel(_numba_kernels.sparse_combine)
    if fast is not None:
        return fast(...)
    ...  # the NumPy kernel

Kernels share code through helpers: a plain Python function marked with :func:`helper` may be
called from any kernel (by its name, or as an attribute of its module). Marking imports nothing;
the first kernel compiled registers the marked helpers with Numba, which compiles a helper only
inside a kernel that calls it, inlined (``inline="always"``: a call costs nothing)::

    @_numba.helper
    def relu(v):
        return v if v > 0 else type(v)(0)

    def relu_kernel(x):  # compiled by _numba.kernel(relu_kernel)
        for i in range(x.shape[0]):
            x[i] = relu(x[i])

Compiled machine code is cached in ``NUMBA_CACHE_DIR`` when that is set, else in
``<platformdirs.user_cache_dir("hubkit")>/numba``, so only the first process on a machine pays the
compile time. Numba's cache checks only the kernel's own source file; a kernel that calls helpers
is cached under a name that includes a hash of the helpers' source files, so editing a helper
recompiles every kernel that calls it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import types
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from hubkit.ops._forksafe import ForkSafeLock

__all__ = ["FLOAT_DTYPES", "cache_dir", "helper", "job", "kernel", "numba_enabled", "set_numba_enabled"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes the float kernels are compiled for (other dtypes take the NumPy code)."""

F = TypeVar("F", bound=Callable[..., Any])

_OFF_VALUES = ("0", "false", "no", "off")
_lock = ForkSafeLock()  # fresh in a forked child: a parent thread may hold it while compiling


class _State:
    enabled: bool | None = None  # None: not decided yet (read the environment on first use)
    forced: bool | None = None  # set by set_numba_enabled
    compiled: dict[Callable[..., Any], Callable[..., Any]] = {}
    helpers: dict[Callable[..., Any], bool] = {}  # marked helper -> registered with Numba yet
    numba: Any = None  # the numba module, once a kernel has imported it
    jobs: dict[Callable[..., Any], tuple[int, Any]] = {}  # job -> (address or 0, its cfunc kept alive)


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


def helper(fn: F) -> F:
    """Marks the numba-compatible function ``fn`` as callable from kernels; returns ``fn`` unchanged.

    ``fn`` stays a plain Python function and marking it imports nothing. When the first kernel is
    compiled (or now, when one already was), it is registered with Numba's
    ``register_jitable(inline="always")``: Numba then compiles it inside each kernel that calls it,
    with that kernel's options (``fastmath`` included), and never on its own. A kernel calls it by
    a global name or as ``module.name``.
    """
    with _lock:
        _STATE.helpers[fn] = False
        if _STATE.numba is not None:
            _register_helpers()
    return fn


def _register_helpers() -> None:
    from numba.extending import register_jitable

    for fn, registered in list(_STATE.helpers.items()):
        if not registered:
            register_jitable(inline="always")(fn)
            _STATE.helpers[fn] = True


def _helpers_called(fn: types.FunctionType) -> list[types.FunctionType]:
    """The marked helpers ``fn`` calls, directly or through other helpers."""
    found: list[types.FunctionType] = []
    todo = [fn]
    while todo:
        f = todo.pop()
        names = f.__code__.co_names
        for name in names:
            value = f.__globals__.get(name)
            # vars(), not getattr(): a module's __getattr__ (lazy imports, deprecations) is not run
            candidates = (
                [vars(value).get(n) for n in names] if isinstance(value, types.ModuleType) else [value]
            )
            for c in candidates:
                if isinstance(c, types.FunctionType) and c in _STATE.helpers and c not in found:
                    found.append(c)
                    todo.append(c)
    return found


def _cache_safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, or when it calls helpers a copy named with a hash of their source files.

    Numba's disk cache checks a function against its own source file only: under its own name,
    a kernel would go on running a helper's old code after the helper is edited.
    """
    helpers = _helpers_called(fn) if isinstance(fn, types.FunctionType) else []
    if not helpers:
        return fn
    digest = hashlib.sha256()
    for path in sorted({h.__code__.co_filename for h in helpers}):
        try:
            with open(path, "rb") as f:
                digest.update(f.read())  # the whole file: the module constants a helper reads too
        except OSError:  # not from a file: the helpers' bytecode and constants
            for h in helpers:
                if h.__code__.co_filename == path:
                    digest.update(h.__code__.co_code + repr(h.__code__.co_consts).encode())
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = f"{fn.__qualname__}__helpers_{digest.hexdigest()[:16]}"
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def _compile(
    fn: Callable[..., Any], numpy_errors: bool = False, options: dict[str, Any] | None = None
) -> Callable[..., Any] | None:
    with _lock:
        done = _STATE.compiled.get(fn)
        if done is not None:
            return done
        numba = _import_numba()
        if numba is None:
            return None
        opts = dict(options or {})
        if numpy_errors:
            opts["error_model"] = "numpy"
        jitted = numba.njit(cache=True, nogil=True, **opts)(_cache_safe(fn))
        _STATE.compiled[fn] = jitted
        return jitted


def _import_numba() -> Any:
    """numba, set up for compiling (its cache directory, the helpers registered); None when it cannot be
    imported (then the NumPy kernels run). Call with ``_lock`` held."""
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
    if _STATE.numba is None:
        _STATE.numba = numba
        _register_helpers()
    return numba


def job(fn: Callable[..., Any]) -> int:
    """The address of the numba-compatible ``fn(args)`` compiled as a native ``void fn(int64 *args)``: a job
    for :mod:`hubkit.ops._worker_pool`, which reads its arguments as int64 words (``numba.carray``).

    Compiled on the first request and cached on disk like a kernel; 0 when Numba is off or cannot compile
    it (the caller then runs without the worker).
    """
    if not numba_enabled():
        return 0
    done = _STATE.jobs.get(fn)
    if done is None:
        with _lock:
            done = _STATE.jobs.get(fn)
            if done is None:
                numba = _import_numba()
                if numba is None:
                    return 0
                try:
                    from numba import types as nt

                    compiled = numba.cfunc(nt.void(nt.CPointer(nt.int64)), cache=True)(_cache_safe(fn))
                    done = (int(compiled.address), compiled)
                except Exception:  # an llvmlite or Numba that cannot build C callbacks: no job, asked once
                    done = (0, None)
                _STATE.jobs[fn] = done
    return done[0]


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
