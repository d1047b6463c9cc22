"""Process-wide counters of events the hot path reports on its cold paths.

Per-function counters live in the C object (``f.cache_stats()``); these
aggregate them by kind for export. Values never include arguments, results
or secrets: only counts.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from typing import Any

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def increment(kind: str) -> None:
    with _lock:
        _counts[kind] += 1


def snapshot() -> dict[str, int]:
    """A new dict of counts by kind, over all functions, since the start or
    the last :func:`reset`; kinds that never happened are absent.
    ``key_error``: the arguments (or a secure function's tenant) could not
    form a key, the call ran uncached. ``store_error``: the result could not
    be encoded, was too large, or could not be encrypted (fail_closed=False),
    it was returned uncached. ``key_func_error``: a ``key=`` function raised or
    returned no str/bytes, the call ran uncached. ``decrypt_error``: an encrypted entry failed to
    decrypt, the call was a miss."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    with _lock:
        _counts.clear()


# ------------------------------------------------ every decorated function
#
# A process-wide view of the per-function counters: each decorated function
# (the C CachedFunction) is listed here by a weak reference when it is
# created (cachekit/observe.py), so listing never keeps a function alive and
# a dropped function disappears from the view. Nothing here runs on a call.

_functions_lock = threading.Lock()
# id(weakref) -> (weakref to the CachedFunction, qualified name, has an L2
# tier, exported to Prometheus)
_functions: dict[int, tuple[weakref.ref[Any], str, bool, bool]] = {}


def register_function(cached: Any, name: str, has_l2: bool, prometheus: bool = True) -> None:
    """List cached (a CachedFunction) under name, while it lives."""

    def forget(ref: weakref.ref[Any]) -> None:
        with _functions_lock:
            _functions.pop(id(ref), None)

    ref = weakref.ref(cached, forget)
    with _functions_lock:
        _functions[id(ref)] = (ref, name, has_l2, prometheus)


def live_functions(prometheus_only: bool = False) -> list[tuple[str, Any, bool]]:
    """(qualified name, CachedFunction, has an L2 tier) of every listed
    function still alive, sorted by name; with prometheus_only, of those
    with ``MonitoringConfig.enable_prometheus_metrics``."""
    with _functions_lock:
        entries = list(_functions.values())
    out = []
    for ref, name, has_l2, prometheus in entries:
        cached = ref()
        if cached is not None and (prometheus or not prometheus_only):
            out.append((name, cached, has_l2))
    out.sort(key=lambda item: item[0])
    return out


def all_stats() -> dict[str, dict[str, int]]:
    """``cache_stats()`` of every live decorated function (with
    ``MonitoringConfig.collect_stats``), by qualified name
    (``module.qualname``). Functions sharing a name (one decorated twice, or
    methods of classes built in a loop) are summed under it. A snapshot:
    each function's counters are read without a lock."""
    out: dict[str, dict[str, int]] = {}
    for name, cached, _ in live_functions():
        stats = cached.cache_stats()
        into = out.setdefault(name, dict.fromkeys(stats, 0))
        for kind, value in stats.items():
            into[kind] = into.get(kind, 0) + value
    return out
