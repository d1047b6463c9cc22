"""Logs and traces of a decorated function's cold paths, and its listing.

Called once per function at decoration (:func:`attach`). The C object then
calls the observer built here on misses and L2 operations only
(src/binding/py_cached_observe.c), never on an L1 hit:

- DEBUG records on the ``cachekit`` logger: ``miss`` (the function ran)
  and ``l2_hit``/``l2_miss``/``l2_error``/``l2_set``/``l2_set_error``, with
  the function's qualified name and the duration. The C side reads the
  logger's own level cache before calling, so with DEBUG off (the default)
  a miss costs a dict lookup, not a Python call.
- OpenTelemetry spans (when ``opentelemetry-api`` is importable):
  ``cachekit.miss`` and ``cachekit.l2.get``/``cachekit.l2.set``, made after
  the operation from the times C measured, so they sit where the operation
  ran, as children of the caller's current span. With the API installed the
  observer is called on every miss and L2 operation (a Python call; the
  span itself is a no-op until an SDK tracer provider is set).

What never appears in a record, span or label: arguments, results, keys,
tenants, secrets. Only the function's qualified name, the event and times.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from cachekit import metrics
from cachekit.config.monitoring import MonitoringConfig

logger = logging.getLogger("cachekit")

# One id per process; a function's session_id is "<this>:<qualified name>".
SESSION = str(uuid.uuid4())

_WORDS = {
    "miss": "miss, the function ran",
    "l2_hit": "L2 hit",
    "l2_miss": "L2 miss",
    "l2_error": "L2 get failed",
    "l2_set": "L2 set",
    "l2_set_error": "L2 set failed",
}
# event -> (span name, outcome attribute)
_SPANS = {
    "miss": ("cachekit.miss", "miss"),
    "l2_hit": ("cachekit.l2.get", "hit"),
    "l2_miss": ("cachekit.l2.get", "miss"),
    "l2_error": ("cachekit.l2.get", "error"),
    "l2_set": ("cachekit.l2.set", "ok"),
    "l2_set_error": ("cachekit.l2.set", "error"),
}

_otel: Any = None  # the opentelemetry.trace module, False when absent


def _trace_api() -> Any:
    global _otel
    if _otel is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _otel = False
        else:
            _otel = trace
    return _otel


def _observer(name: str, log: bool, trace: Any) -> Callable[[str, int, int], None]:
    tracer = None
    kinds: dict[str, Any] = {}
    error_status = None
    if trace:
        from cachekit import __version__

        # A ProxyTracer until the application sets a provider, then its.
        tracer = trace.get_tracer("cachekit", __version__)
        kinds = {"miss": trace.SpanKind.INTERNAL, "l2": trace.SpanKind.CLIENT}
        error_status = trace.Status(trace.StatusCode.ERROR)

    def observe(event: str, start_ns: int, end_ns: int) -> None:
        if log and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "cachekit: %s: %s (%.3f ms)", name, _WORDS.get(event, event),
                (end_ns - start_ns) / 1e6,
            )
        if tracer is not None:
            span_name, outcome = _SPANS.get(event, (f"cachekit.{event}", event))
            # C measured on the monotonic clock; spans want wall-clock ns.
            offset = time.time_ns() - time.monotonic_ns()
            span = tracer.start_span(
                span_name,
                kind=kinds["miss" if event == "miss" else "l2"],
                start_time=start_ns + offset,
                attributes={"cachekit.function": name, "cachekit.outcome": outcome},
            )
            if outcome == "error":
                span.set_status(error_status)
            span.end(end_time=end_ns + offset)

    return observe


def attach(cached: Any, name: str, monitoring: MonitoringConfig, has_l2: bool) -> None:
    """Give cached (a CachedFunction) its session id, observer and listing."""
    trace = _trace_api()
    log = monitoring.enable_structured_logging
    observer = _observer(name, log, trace) if log or trace else None
    log_cache = getattr(logger, "_cache", None)
    if trace or not isinstance(log_cache, dict):
        log_cache = None  # call the observer always; it decides
    cached._set_observer(observer, log_cache, f"{SESSION}:{name}")
    if monitoring.collect_stats:
        metrics.register_function(cached, name, has_l2, monitoring.enable_prometheus_metrics)
        if monitoring.enable_prometheus_metrics:
            from cachekit import prometheus

            prometheus.register_default()
