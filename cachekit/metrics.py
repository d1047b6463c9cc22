"""Process-wide counters of events the hot path reports on its cold paths.

Per-function counters live in the C object (``f.cache_stats()``); these
aggregate them by kind for export. Values never include arguments, results
or secrets: only counts.
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def increment(kind: str) -> None:
    with _lock:
        _counts[kind] += 1


def snapshot() -> dict[str, int]:
    """Counts by kind: ``key_error`` (an argument could not be part of a key,
    the call ran uncached), ``store_error`` (a result could not be stored)."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    with _lock:
        _counts.clear()
