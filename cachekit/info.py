"""CacheInfo: what a decorated function's ``cache_info()`` returns."""

from __future__ import annotations

from typing import NamedTuple


class CacheInfo(NamedTuple):
    """Counters of one cached function.

    ``hits``/``misses`` count calls answered from the cache or by running the
    function; ``currsize``/``currbytes`` are this function's entries in its L1
    store and the bytes charged for them (encoded size plus key and overhead).
    ``maxsize`` is the store's entry bound (``None``: unbounded); a store may be
    shared by several functions. The L2 fields stay zero until a backend is set.
    """

    hits: int
    misses: int
    l1_hits: int
    l2_hits: int
    maxsize: int | None
    currsize: int | None
    l2_avg_latency_ms: float
    last_operation_at: float | None
    session_id: str | None = None
    currbytes: int = 0
