"""What a cached function does when caching fails on a cold path.

The C hot path calls ``on_event(kind, exc)`` when an argument cannot be part
of a key (the call runs uncached) or a result cannot be stored (it is
returned uncached). We count every event and log the first of each kind per
function, so a hot function with an unstorable result does not flood logs.
Log lines carry the function name, the kind and, for cachekit's own errors,
their message (which names a type, never a value); other exceptions are
logged by class name only, since their text may hold user data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cachekit import metrics
from cachekit.exceptions import CachekitError

logger = logging.getLogger("cachekit")

_WHAT = {
    "key_error": "arguments cannot form a cache key; the call ran uncached",
    "store_error": "the result cannot be cached; it was returned uncached",
    "key_func_error": "the key= function raised or returned no str/bytes; the call ran uncached",
    "refresh_error": "a background refresh failed; the stale value is served until its stale_ttl ends",
}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CachekitError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def event_reporter(qualified_name: str) -> Callable[[str, BaseException], None]:
    logged: set[str] = set()

    def on_event(kind: str, exc: BaseException) -> None:
        metrics.increment(kind)
        if kind in logged:
            return
        logged.add(kind)
        logger.warning(
            "cachekit: %s: %s (%s). Further occurrences are counted, not logged.",
            qualified_name,
            _WHAT.get(kind, kind),
            _describe(exc),
        )

    return on_event
