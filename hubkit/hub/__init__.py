"""Layer 5, the hub: handles to local directories, the cache, downloads, and static registries.

Nothing here imports ``requests``, ``tqdm`` or ``platformdirs`` at import time; they load on first use.
"""

from hubkit.hub.cache import Cache, CacheEntry
from hubkit.hub.config import HubConfig, default_cache_dir
from hubkit.hub.handles import cache_key, normalize_handle
from hubkit.hub.registry import check_registry, pack_module, publish, rebuild_indexes, summarize_module
from hubkit.hub.resolvers import (
    Resolver,
    ResolverChain,
    register_resolver,
    registry_latest,
    resolve,
    unregister_resolver,
)

__all__ = [
    "Cache",
    "CacheEntry",
    "HubConfig",
    "Resolver",
    "ResolverChain",
    "cache_key",
    "check_registry",
    "default_cache_dir",
    "normalize_handle",
    "pack_module",
    "publish",
    "rebuild_indexes",
    "register_resolver",
    "registry_latest",
    "resolve",
    "summarize_module",
    "unregister_resolver",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = ["publish", "register_resolver", "registry_latest", "resolve", "unregister_resolver"]
