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
