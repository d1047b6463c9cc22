"""Prometheus metrics of every decorated function, read at scrape time.

A custom collector: nothing is counted for Prometheus on a call. Each scrape
reads the C counters of every live decorated function
(``cachekit.metrics.live_functions()``: ``cache_stats()`` and the L2
round-trip histograms) and turns them into metric families, labelled by
the function's qualified name (``module.qualname``) and nothing taken from
a call. Needs ``prometheus_client`` (``pip install 'cachekit-native[prometheus]'``).

Decorating a function with ``MonitoringConfig.enable_prometheus_metrics``
(the default) registers one collector with ``prometheus_client.REGISTRY``
when the package is installed; :func:`register` adds one to another registry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from cachekit import metrics

# cache_stats() key -> the kind label of cachekit_cache_errors_total.
ERROR_KINDS = {
    "l2_errors": "backend",
    "integrity_errors": "integrity",
    "decrypt_errors": "decrypt",
    "key_errors": "key",
    "store_errors": "store",
}
# _latencies() key -> histogram name and help.
HISTOGRAMS = {
    "l2_hit": ("cachekit_l2_hit_duration_seconds", "L2 get round trips that found the entry"),
    "l2_miss": (
        "cachekit_l2_miss_duration_seconds",
        "L2 get round trips that did not find it, or failed",
    ),
    "l2_set": ("cachekit_l2_set_duration_seconds", "L2 writes of a computed result"),
}


def _bucket_label(bound: float) -> str:
    return repr(float(bound))  # "0.0001", "1.0": as prometheus_client writes le


class CachekitCollector:
    """Reads every live decorated function's counters on each ``collect()``."""

    def describe(self) -> list[Any]:
        # Names only, for the registry's duplicate check; no samples.
        return list(self._families(with_samples=False))

    def collect(self) -> Iterator[Any]:
        yield from self._families(with_samples=True)

    def _families(self, with_samples: bool) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        fn = ["function"]
        hits = CounterMetricFamily(
            "cachekit_cache_hits", "Calls answered from the cache, by layer",
            labels=["function", "layer"],
        )
        misses = CounterMetricFamily(
            "cachekit_cache_misses", "Calls that ran the function", labels=fn
        )
        errors = CounterMetricFamily(
            "cachekit_cache_errors",
            "Caching failures survived by the call, by kind (backend, integrity, decrypt, key, store)",
            labels=["function", "kind"],
        )
        size = GaugeMetricFamily("cachekit_l1_cache_size", "Entries in L1", labels=fn)
        nbytes = GaugeMetricFamily(
            "cachekit_l1_cache_bytes", "Bytes charged for the L1 entries", labels=fn
        )
        hists = {
            kind: HistogramMetricFamily(name, text, labels=fn)
            for kind, (name, text) in HISTOGRAMS.items()
        }
        if with_samples:
            for name, cached, has_l2 in metrics.live_functions(prometheus_only=True):
                stats = cached.cache_stats()
                hits.add_metric([name, "l1"], stats["hits"] - stats["l2_hits"])
                hits.add_metric([name, "l2"], stats["l2_hits"])
                misses.add_metric([name], stats["misses"])
                for key, kind in ERROR_KINDS.items():
                    errors.add_metric([name, kind], stats[key])
                size.add_metric([name], stats["entries"])
                nbytes.add_metric([name], stats["bytes"])
                if has_l2:
                    lat = cached._latencies()
                    labels = [_bucket_label(b) for b in lat["bounds"]] + ["+Inf"]
                    for kind, family in hists.items():
                        counts, total = lat[kind]
                        running, buckets = 0, []
                        for label, count in zip(labels, counts):
                            running += count
                            buckets.append((label, running))
                        family.add_metric([name], buckets, total)
        yield from (hits, misses, errors, size, nbytes, *hists.values())


_lock = threading.Lock()
_default: CachekitCollector | None = None


def register(registry: Any) -> CachekitCollector:
    """Register a new collector with registry (a prometheus_client
    ``CollectorRegistry``) and return it."""
    collector = CachekitCollector()
    registry.register(collector)
    return collector


def register_default() -> CachekitCollector | None:
    """Register the collector with ``prometheus_client.REGISTRY`` once per
    process; None when prometheus_client is not installed."""
    global _default
    with _lock:
        if _default is not None:
            return _default
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return None
        _default = register(REGISTRY)
        return _default
