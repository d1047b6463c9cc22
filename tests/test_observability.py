"""Metrics, logs and traces of decorated functions (cachekit/prometheus.py,
cachekit/observe.py, src/binding/py_cached_observe.c).

Prometheus output is read back with prometheus_client's own parser from a
fresh CollectorRegistry; spans go to the OpenTelemetry SDK's in-memory
exporter. Each test skips only when the package it needs is not installed.
"""

from __future__ import annotations

import gc
import logging
import re

import pytest

from cachekit import cache, metrics
from cachekit.backends import RedisBackend
from cachekit.config import DecoratorConfig, MonitoringConfig
from cachekit.exceptions import ConfigurationError

SSN = "078-05-1120"
HEX_KEY = "ab" * 32


@pytest.fixture
def backend(redis_server):
    redis_server.flushall()
    return RedisBackend(redis_server.url)


@pytest.fixture
def down_backend():
    # Nothing listens on port 1: every L2 operation fails fast.
    return RedisBackend("redis://127.0.0.1:1/0")


def scrape():
    """Every sample of a fresh registry holding one cachekit collector:
    {(name, labels as a sorted tuple): value}."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from cachekit import prometheus

    registry = prometheus_client.CollectorRegistry()
    prometheus.register(registry)
    text = prometheus_client.generate_latest(registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def sample(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


# ------------------------------------------------------------ Prometheus


def test_scrape_counts_match_the_calls(backend):
    @cache(backend=backend, l1_max_entries=1, namespace="obs-scrape")
    def square(x):
        return x * x

    for x in (1, 2, 3):  # three misses (each evicts the previous from L1)
        square(x)
    square(3)
    square(3)  # two L1 hits
    square(1)  # evicted from L1, found in L2
    name = f"{square.__module__}.{square.__qualname__}"
    text, samples = scrape()
    assert sample(samples, "cachekit_cache_misses_total", function=name) == 3
    assert sample(samples, "cachekit_cache_hits_total", function=name, layer="l1") == 2
    assert sample(samples, "cachekit_cache_hits_total", function=name, layer="l2") == 1
    for kind in ("backend", "integrity", "decrypt", "key", "store"):
        assert sample(samples, "cachekit_cache_errors_total", function=name, kind=kind) == 0
    assert sample(samples, "cachekit_l1_cache_size", function=name) == 1
    assert sample(samples, "cachekit_l1_cache_bytes", function=name) > 0
    # Four L2 gets: three missed, one hit; three writes.
    assert sample(samples, "cachekit_l2_miss_duration_seconds_count", function=name) == 3
    assert sample(samples, "cachekit_l2_hit_duration_seconds_count", function=name) == 1
    assert sample(samples, "cachekit_l2_set_duration_seconds_count", function=name) == 3
    assert sample(samples, "cachekit_l2_set_duration_seconds_bucket", function=name, le="+Inf") == 3
    assert sample(samples, "cachekit_l2_hit_duration_seconds_sum", function=name) > 0
    # Cumulative buckets never decrease.
    les = [
        v for (n, lab), v in samples.items()
        if n == "cachekit_l2_miss_duration_seconds_bucket" and ("function", name) in lab
    ]
    assert len(les) == 15 and max(les) == 3
    info = square.cache_info()
    assert info.l2_avg_latency_ms > 0
    assert metrics.all_stats()[name]["misses"] == 3


def test_backend_errors_are_counted_by_kind(down_backend):
    @cache(backend=down_backend, namespace="obs-down")
    def f(x):
        return x + 1

    assert f(1) == 2 and f(2) == 3
    name = f"{f.__module__}.{f.__qualname__}"
    _, samples = scrape()
    assert sample(samples, "cachekit_cache_errors_total", function=name, kind="backend") >= 2
    assert sample(samples, "cachekit_cache_misses_total", function=name) == 2


def test_labels_hold_only_the_function_name_never_arguments_or_secrets(monkeypatch, backend):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", HEX_KEY)

    @cache.secure(backend=backend, ttl=60, namespace="obs-secure")
    def lookup_ssn(ssn):
        return {"ssn": ssn, "ok": True}

    lookup_ssn(SSN)
    lookup_ssn(SSN)
    text, samples = scrape()
    assert SSN not in text and HEX_KEY not in text
    # Not even a fragment of the SSN in a label (sample values are timings,
    # whose digits may spell anything, so only the labels are searched).
    labels = " ".join(re.findall(r"\{[^}]*\}", text))
    assert "078" not in labels and "1120" not in labels
    allowed = {"function", "layer", "kind", "le"}
    for (_, labels) in samples:
        assert {k for k, _ in labels} <= allowed
    name = f"{lookup_ssn.__module__}.{lookup_ssn.__qualname__}"
    assert sample(samples, "cachekit_cache_hits_total", function=name, layer="l1") == 1


def test_monitoring_config_controls_export_and_listing():
    @cache(backend=None, monitoring=MonitoringConfig(enable_prometheus_metrics=False))
    def hidden_from_prometheus(x):
        return x

    @cache(backend=None, monitoring=MonitoringConfig(collect_stats=False))
    def unlisted(x):
        return x

    hidden_from_prometheus(1)
    unlisted(1)
    text, _ = scrape()
    assert "hidden_from_prometheus" not in text and "unlisted" not in text
    names = metrics.all_stats()
    assert any(n.endswith("hidden_from_prometheus") for n in names)
    assert not any(n.endswith("unlisted") for n in names)
    assert unlisted.cache_info().misses == 1  # its own counters still count
    with pytest.raises(ConfigurationError, match="collect_stats"):
        cache(backend=None, monitoring=MonitoringConfig(collect_stats="yes"))(lambda: 1)
    with pytest.raises(ConfigurationError, match="MonitoringConfig"):
        cache(backend=None, config=DecoratorConfig(monitoring={"collect_stats": True}))(lambda: 1)


def test_default_registry_gets_one_collector():
    prometheus_client = pytest.importorskip("prometheus_client")

    @cache(backend=None)
    def in_default_registry(x):
        return x

    in_default_registry(5)
    text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert text.count("# TYPE cachekit_cache_misses_total counter") == 1
    assert "in_default_registry" in text


def test_all_stats_drops_a_function_that_was_dropped():
    def make():
        @cache(backend=None)
        def short_lived(x):
            return x

        short_lived(1)
        return f"{short_lived.__module__}.{short_lived.__qualname__}"

    name = make()
    gc.collect()
    assert name not in metrics.all_stats()


def test_functions_sharing_a_name_are_summed():
    fs = []
    for _ in range(2):
        @cache(backend=None)
        def twin(x):
            return x

        twin(1)
        fs.append(twin)
    name = f"{fs[0].__module__}.{fs[0].__qualname__}"
    assert metrics.all_stats()[name]["misses"] == 2


def test_session_id_names_process_and_function():
    from cachekit.observe import SESSION

    @cache(backend=None)
    def g(x):
        return x

    g(1)
    assert g.cache_info().session_id == f"{SESSION}:{g.__module__}.{g.__qualname__}"


# ---------------------------------------------------------------- logging


def test_debug_logs_misses_not_l1_hits(caplog):
    @cache(backend=None)
    def logged(x):
        return x

    caplog.set_level(logging.DEBUG, logger="cachekit")
    logged(1)
    logged(1)
    lines = [r.getMessage() for r in caplog.records if r.name == "cachekit"]
    assert len(lines) == 1 and "logged: miss" in lines[0], lines


def test_no_records_when_debug_is_off(caplog):
    @cache(backend=None)
    def quiet(x):
        return x

    caplog.set_level(logging.INFO, logger="cachekit")
    quiet(1)
    quiet(2)
    assert not [r for r in caplog.records if r.name == "cachekit"]
    caplog.set_level(logging.DEBUG, logger="cachekit")  # turned on later: seen at once
    quiet(3)
    assert [r for r in caplog.records if "quiet: miss" in r.getMessage()]


def test_enable_structured_logging_false_keeps_it_quiet(caplog):
    @cache(backend=None, monitoring=MonitoringConfig(enable_structured_logging=False))
    def silent(x):
        return x

    caplog.set_level(logging.DEBUG, logger="cachekit")
    silent(1)
    assert not [r for r in caplog.records if "silent" in r.getMessage()]


def test_l2_events_are_logged_without_arguments(monkeypatch, backend, caplog):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", HEX_KEY)

    @cache.secure(backend=backend, ttl=60, l1_max_entries=1, namespace="obs-log")
    def ssn_record(ssn):
        return {"ssn": ssn}

    caplog.set_level(logging.DEBUG, logger="cachekit")
    ssn_record(SSN)
    ssn_record("000-00-0000")  # evicts the first from L1
    ssn_record(SSN)  # L2 hit
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "L2 miss" in text and "L2 set" in text and "L2 hit" in text
    assert SSN not in text and "000-00-0000" not in text and HEX_KEY not in text
    for r in caplog.records:
        assert all(SSN not in str(a) for a in (r.args or ()))


def test_the_c_gate_reads_the_logger_cache():
    """With a level cache saying DEBUG is off, C does not call the observer;
    once the cache is cleared (any setLevel), it asks again."""
    @cache(backend=None)
    def gated(x):
        return x

    seen = []
    probe = logging.getLogger("cachekit.test-gate")
    probe.setLevel(logging.INFO)
    assert not probe.isEnabledFor(logging.DEBUG)  # fills probe._cache[10] = False
    gated._set_observer(lambda *a: seen.append(a[0]), probe._cache, None)
    gated(1)
    assert seen == []
    probe.setLevel(logging.DEBUG)  # clears every logger's cache
    gated(2)
    assert seen == ["miss"]


def test_an_observer_never_changes_the_outcome():
    @cache(backend=None)
    def fails_on_zero(x):
        if x == 0:
            raise ZeroDivisionError("no")
        return 10 // x

    def broken(*a):
        raise RuntimeError("observer bug")

    fails_on_zero._set_observer(broken, None, None)
    assert fails_on_zero(5) == 2
    with pytest.raises(ZeroDivisionError, match="no"):
        fails_on_zero(0)
    assert fails_on_zero(5) == 2 and fails_on_zero.cache_info().hits == 1


# ---------------------------------------------------------- OpenTelemetry


@pytest.fixture(scope="module")
def spans():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    inner = SimpleSpanProcessor(exporter)

    class WhileModuleRuns(SpanProcessor):  # type: ignore[misc]
        """The global provider cannot be unset: after this module, ended
        spans are dropped, or every later test's misses would pile them up
        in memory (test_refcounts counts objects)."""

        live = True

        def on_end(self, span: object) -> None:
            if self.live:
                inner.on_end(span)

    gate = WhileModuleRuns()
    provider = TracerProvider()
    provider.add_span_processor(gate)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another tracer provider was set in this process")
    yield exporter
    gate.live = False
    exporter.clear()


def test_spans_around_misses_and_l2_operations(spans, backend):
    from opentelemetry import trace

    @cache(backend=backend, namespace="obs-span")
    def traced(x):
        return x * 2

    spans.clear()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as parent:
        traced(21)
        traced(21)  # L1 hit: no span
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"request", "cachekit.miss", "cachekit.l2.get", "cachekit.l2.set"}
    name = f"{traced.__module__}.{traced.__qualname__}"
    for span_name in ("cachekit.miss", "cachekit.l2.get", "cachekit.l2.set"):
        s = finished[span_name]
        assert s.parent is not None and s.parent.span_id == parent.get_span_context().span_id
        assert s.attributes["cachekit.function"] == name
        assert s.end_time >= s.start_time
        r = finished["request"]
        assert r.start_time <= s.start_time and s.end_time <= r.end_time
    assert finished["cachekit.l2.get"].attributes["cachekit.outcome"] == "miss"
    assert finished["cachekit.l2.get"].kind is trace.SpanKind.CLIENT


def test_failed_l2_operations_are_error_spans(spans, down_backend):
    from opentelemetry.trace import StatusCode

    @cache(backend=down_backend, namespace="obs-span-down")
    def degraded(x):
        return x

    spans.clear()
    assert degraded(1) == 1
    gets = [s for s in spans.get_finished_spans() if s.name == "cachekit.l2.get"]
    assert gets and gets[0].attributes["cachekit.outcome"] == "error"
    assert gets[0].status.status_code is StatusCode.ERROR


def test_spans_carry_no_arguments_or_secrets(spans, monkeypatch, backend):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", HEX_KEY)

    @cache.secure(backend=backend, ttl=60, namespace="obs-span-secure")
    def by_ssn(ssn):
        return {"ssn": ssn}

    spans.clear()
    by_ssn(SSN)
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} >= {"cachekit.miss", "cachekit.l2.get", "cachekit.l2.set"}
    for s in finished:
        blob = repr(dict(s.attributes)) + s.name + repr(s.events) + repr(s.resource.attributes)
        assert SSN not in blob and HEX_KEY not in blob
