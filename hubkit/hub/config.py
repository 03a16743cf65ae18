"""Hub settings: one immutable object, read from the environment at call time (never at import).

Every knob the hub layer has lives here so tests and users can set it in one place, either through
environment variables or by passing a :class:`HubConfig` explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping

from hubkit.errors import ResolveError

__all__ = ["HubConfig", "default_cache_dir"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """Returns the cache root: ``HUBKIT_CACHE_DIR``, else the per-user cache dir (never the system temp dir).

    Args:
        environ: Environment to read; defaults to ``os.environ``.

    Returns:
        An absolute path (it may not exist yet).
    """
    environ = os.environ if environ is None else environ
    configured = environ.get("HUBKIT_CACHE_DIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    import platformdirs  # lazy: keeps `import hubkit` fast

    return os.path.abspath(platformdirs.user_cache_dir("hubkit"))


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    raw = environ.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ResolveError(f"Environment variable {name}={raw!r} is not a boolean; expected one of {sorted(_TRUE | _FALSE - {''})}.")


# Upper bounds of environment numbers: a duration beyond ~11 days (HUBKIT_READ_TIMEOUT=1e300 overflowed
# socket.settimeout and time.sleep), a byte count beyond int64, more than 1,000 retries.
MAX_SECONDS = 1e6
_MAX_BYTES = 2**63 - 1
_MAX_RETRIES = 1000


def _number(environ: Mapping[str, str], name: str, default: float, kind: type = float, positive: bool = False,
            maximum: float = MAX_SECONDS) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    shown = raw if len(raw) <= 40 else raw[:40] + "..."
    try:
        if len(raw) > 100:  # also keeps int() away from its quadratic and limited long-string path
            raise ValueError
        value = kind(raw)
    except ValueError:
        what = "an int" if kind is int else "a float"
        raise ResolveError(f"Environment variable {name}={shown!r} is not {what}.") from None
    if not math.isfinite(value):
        raise ResolveError(f"Environment variable {name}={shown!r} must be a finite number.")
    if value < 0:
        raise ResolveError(f"Environment variable {name}={shown!r} must not be negative.")
    if positive and value == 0:
        raise ResolveError(f"Environment variable {name}={shown!r} must be greater than 0.")
    if value > maximum:
        raise ResolveError(f"Environment variable {name}={shown!r} must be at most {maximum:g}.")
    return value


@dataclasses.dataclass(frozen=True)
class HubConfig:
    """Settings of the resolvers, the cache and the HTTP client.

    Attributes:
        cache_dir: Root of the module cache.
        offline: When true no network request is ever made (``HUBKIT_OFFLINE``).
        progress: ``True``/``False`` forces the download progress bar on/off; ``None`` shows it
            only when stderr is a terminal (``HUBKIT_PROGRESS``).
        connect_timeout: Seconds to wait for a TCP connection (``HUBKIT_CONNECT_TIMEOUT``).
        read_timeout: Seconds to wait for each read from the server (``HUBKIT_READ_TIMEOUT``).
        request_deadline: Seconds one request may take in all for its response headers, and for a registry
            document's body too (``HUBKIT_REQUEST_DEADLINE``): the read timeout bounds each read only, so a
            server sending a byte a second would otherwise hold hubkit for ever.
        retries: Extra attempts after a retryable failure (``HUBKIT_RETRIES``).
        backoff: First backoff delay in seconds, doubled on each retry (``HUBKIT_BACKOFF``).
        backoff_max: Upper bound of one backoff delay, including ``Retry-After`` (``HUBKIT_BACKOFF_MAX``).
        lock_timeout: Seconds without progress after which a live lock holder is taken over
            (``HUBKIT_LOCK_TIMEOUT``).
        lock_poll: Seconds between two looks at a lock held by someone else (``HUBKIT_LOCK_POLL``).
        max_extract_bytes: Largest total uncompressed size an archive may expand to
            (``HUBKIT_MAX_EXTRACT_BYTES``); a larger archive is refused as a decompression bomb.
        max_extract_members: Largest number of entries an archive may hold.
        max_download_bytes: Largest archive a download may fetch (``HUBKIT_MAX_DOWNLOAD_BYTES``), whatever
            the server announces; a registry manifest's declared size bounds it further.
        chunk_size: Bytes per read when streaming a download.
    """

    cache_dir: str
    offline: bool = False
    progress: bool | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    request_deadline: float = 300.0
    retries: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0
    lock_timeout: float = 600.0
    lock_poll: float = 0.5
    max_extract_bytes: int = 64 << 30
    max_extract_members: int = 100_000
    chunk_size: int = 1 << 20
    max_download_bytes: int = 64 << 30

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "request_deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_SECONDS:
                raise ResolveError(f"HubConfig.{name} must be a positive number of seconds up to {MAX_SECONDS:g}, "
                                   f"got {value!r}.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> HubConfig:
        """Builds the settings from environment variables, then applies ``overrides``.

        Args:
            environ: Environment to read; defaults to ``os.environ``.
            **overrides: Field values that win over the environment.

        Returns:
            A new ``HubConfig``.

        Raises:
            ResolveError: An environment variable holds a value of the wrong kind.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {
            "offline": bool(_flag(environ, "HUBKIT_OFFLINE")),
            "progress": _flag(environ, "HUBKIT_PROGRESS"),
            "connect_timeout": _number(environ, "HUBKIT_CONNECT_TIMEOUT", cls.connect_timeout, positive=True),
            "read_timeout": _number(environ, "HUBKIT_READ_TIMEOUT", cls.read_timeout, positive=True),
            "request_deadline": _number(environ, "HUBKIT_REQUEST_DEADLINE", cls.request_deadline, positive=True),
            "retries": int(_number(environ, "HUBKIT_RETRIES", cls.retries, int, maximum=_MAX_RETRIES)),
            "backoff": _number(environ, "HUBKIT_BACKOFF", cls.backoff),
            "backoff_max": _number(environ, "HUBKIT_BACKOFF_MAX", cls.backoff_max),
            "lock_timeout": _number(environ, "HUBKIT_LOCK_TIMEOUT", cls.lock_timeout),
            "lock_poll": _number(environ, "HUBKIT_LOCK_POLL", cls.lock_poll),
            "max_extract_bytes": int(_number(environ, "HUBKIT_MAX_EXTRACT_BYTES", cls.max_extract_bytes, int,
                                             maximum=_MAX_BYTES)),
            "max_download_bytes": int(_number(environ, "HUBKIT_MAX_DOWNLOAD_BYTES", cls.max_download_bytes, int,
                                              maximum=_MAX_BYTES)),
        }
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"Unknown HubConfig fields {unknown}; expected {sorted(f.name for f in dataclasses.fields(cls))}.")
        values.update(overrides)
        if "cache_dir" not in values:
            values["cache_dir"] = default_cache_dir(environ)
        return cls(**values)  # type: ignore[arg-type]
