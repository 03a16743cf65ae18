"""The base of the built-in resolvers (``hubkit.hub.resolvers``, ``hubkit.hub.onnx_file``)."""

from __future__ import annotations

from hubkit.errors import ResolveError
from hubkit.hub.cache import Cache
from hubkit.hub.config import HubConfig, default_cache_dir
from hubkit.hub.handles import normalize_handle, redact_url

__all__ = ["BuiltinResolver"]


class BuiltinResolver:
    """What the built-in resolvers share: lazily read settings, cache look-ups, the offline refusal."""

    description = ""
    what = "Module"  # how the offline refusal names what is missing

    def __init__(self, config: HubConfig | None = None) -> None:
        self._config = config

    @property
    def config(self) -> HubConfig:
        """Settings, read from the environment on first use (a cache hit needs only the cache dir)."""
        if self._config is None:
            self._config = HubConfig.from_env()
        return self._config

    def cached(self, key: str) -> str | None:
        """The module directory of a complete cache entry, found without reading the full settings."""
        cache_dir = self._config.cache_dir if self._config is not None else default_cache_dir()
        return Cache.lookup_in(cache_dir, key)

    def _cached_download(self, key: str, handle: str) -> str | None:
        """The cached module directory of a handle that is downloaded on a miss; a miss while offline is refused."""
        hit = self.cached(key)
        if hit is None and self.config.offline:
            raise ResolveError(
                f"{self.what} {redact_url(handle)!r} is not in the cache {self.config.cache_dir!r}, and HUBKIT_OFFLINE is set so it "
                "cannot be downloaded; unset HUBKIT_OFFLINE or download it first with `hubkit download`."
            )
        return hit

    def cache_handle(self, handle: str) -> str:
        """The handle as recorded in the descriptor of its cache entry (``hubkit cache rm`` matches on it)."""
        return normalize_handle(handle)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"
