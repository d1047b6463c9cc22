"""@cache on the L1 store: forms, hits and misses, keys from calls, methods,
wrapper metadata, TTL, invalidation, and results that cannot be cached."""

from __future__ import annotations

import functools
import gc
import inspect
import threading
import time
import weakref

import pytest

from cachekit import CacheInfo, ConfigurationError, DecoratorConfig, L1CacheConfig, cache, metrics
from cachekit.decorators import cache as cache_from_decorators


def counting(fn):
    """Wrap fn so tests can see how often it really ran."""
    calls = []

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        calls.append((args, kwargs))
        return fn(*args, **kwargs)

    inner.calls = calls
    return inner


def test_decorator_forms():
    @cache
    def a(x):
        return x

    @cache()
    def b(x):
        return x

    @cache(ttl=60, namespace="users", backend=None)
    def c(x):
        return x

    @cache(config=DecoratorConfig(ttl=5))
    def d(x):
        return x

    @cache.local
    def e(x):
        return x

    for f in (a, b, c, d, e):
        assert f(3) == 3 and f(3) == 3
        assert f.cache_info().hits == 1
    assert cache_from_decorators is cache


def test_hits_misses_and_info():
    runs = []

    @cache
    def square(n):
        runs.append(n)
        return n * n

    assert [square(i) for i in (2, 2, 3, 2, 3)] == [4, 4, 9, 4, 9]
    assert runs == [2, 3]
    info = square.cache_info()
    assert isinstance(info, CacheInfo)
    assert (info.hits, info.misses, info.l1_hits, info.l2_hits) == (3, 2, 3, 0)
    assert info.currsize == 2 and info.currbytes > 0
    square.cache_clear()
    assert square.cache_info().currsize == 0
    square(2)
    assert runs == [2, 3, 2]


def test_wrapper_keeps_metadata():
    def original(a: int, b: str = "x", *, c: float = 1.0) -> str:
        """Docs."""
        return f"{a}{b}{c}"

    wrapped = cache(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__qualname__ == original.__qualname__
    assert wrapped.__doc__ == "Docs."
    assert wrapped.__wrapped__ is original
    assert wrapped.__module__ == __name__
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert "original" in repr(wrapped)


def test_positional_keyword_and_default_spellings_share_a_key():
    @cache
    @counting
    def f(a, b=2, *, c=3):
        return (a, b, c)

    assert f(1) == f(1, 2) == f(a=1) == f(1, b=2) == f(b=2, a=1) == f(1, 2, c=3) == (1, 2, 3)
    assert len(f.__wrapped__.calls) == 1
    f(1, 3)
    f(1, c=4)
    assert len(f.__wrapped__.calls) == 3


def test_types_and_argument_boundaries_make_distinct_keys():
    @cache
    @counting
    def f(*args):
        return args

    for args in [(1,), (True,), (1.0,), ("1",), (b"1",), ((1,),), ([1],), (1, 23), (12, 3), ("1", "23"), ("12", "3")]:
        assert f(*args) == args
    assert len(f.__wrapped__.calls) == 11


def test_unhashable_arguments_work():
    @cache
    @counting
    def f(items, opts):
        return len(items) + len(opts)

    assert f([1, 2], {"a": 1, "b": 2}) == 4
    assert f([1, 2], {"b": 2, "a": 1}) == 4  # equal dicts, same key
    assert f({3, 4}, {"x": [1]}) == 3
    assert f({4, 3}, {"x": [1]}) == 3
    assert len(f.__wrapped__.calls) == 2


def test_kwargs_order_irrelevant():
    @cache
    @counting
    def f(**kw):
        return sorted(kw)

    f(a=1, b=2)
    f(b=2, a=1)
    assert len(f.__wrapped__.calls) == 1


def test_bad_call_raises_the_normal_type_error():
    @cache
    def f(a, b):
        return a + b

    with pytest.raises(TypeError):
        f(1)
    with pytest.raises(TypeError):
        f(1, 2, 3)
    with pytest.raises(TypeError):
        f(1, c=2)
    with pytest.raises(TypeError):
        f(1, 2, a=1)


def test_exceptions_are_not_cached():
    runs = []

    @cache
    def flaky(x):
        runs.append(x)
        if len(runs) == 1:
            raise RuntimeError("boom")
        return x

    with pytest.raises(RuntimeError):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert runs == [1, 1]


def test_ttl_expires():
    runs = []

    @cache(ttl=0.05)
    def now(x):
        runs.append(x)
        return len(runs)

    assert now(1) == 1 and now(1) == 1
    time.sleep(0.08)
    assert now(1) == 2


def test_invalidate_cache():
    @cache
    @counting
    def f(a, b=0):
        return a + b

    f(1)
    f(2)
    assert f.invalidate_cache(1) is True
    assert f.invalidate_cache(1, b=0) is False
    f(1)
    f(2)
    assert len(f.__wrapped__.calls) == 3
    with pytest.raises(TypeError):
        f.invalidate_cache(1, 2, 3)  # does not bind
    assert f.invalidate_cache() is True  # no arguments: every entry


def test_cache_key_is_printable_and_stable():
    @cache(namespace="users")
    def lookup(user_id):
        return user_id

    k = lookup.cache_key(42)
    assert k.startswith(f"users:{__name__}.test_cache_key_is_printable_and_stable.<locals>.lookup:")
    digest = k.rsplit(":", 1)[1]
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert lookup.cache_key(user_id=42) == k
    assert lookup.cache_key(43) != k


def test_methods_and_classmethods():
    class Repo:
        runs = 0

        @cache
        def get(self, x):
            Repo.runs += 1
            return x * 2

        @classmethod
        @cache
        def build(cls, x):
            Repo.runs += 1
            return (cls.__name__, x)

        @cache
        @classmethod
        def build2(cls, x):
            Repo.runs += 1
            return x

        @staticmethod
        @cache
        def helper(x):
            Repo.runs += 1
            return -x

    r1, r2 = Repo(), Repo()
    assert r1.get(2) == 4 and r1.get(2) == 4 and r2.get(2) == 4
    assert Repo.runs == 2  # keyed by instance identity: r2 has its own entry
    assert Repo.build(1) == ("Repo", 1) and Repo.build(1) == ("Repo", 1) and r1.build(1)
    assert Repo.build2(5) == 5 and Repo.build2(5) == 5
    assert Repo.helper(3) == -3 and Repo.helper(3) == -3
    assert Repo.runs == 5
    assert Repo.get.invalidate_cache(r1, 2) is True


def test_method_with_cachekit_key_is_per_instance():
    class Account:
        def __init__(self, ident):
            self.ident = ident

        def __cachekit_key__(self):
            return self.ident

        @cache
        def balance(self):
            return self.ident * 10

    assert Account(1).balance() == 10
    assert Account(2).balance() == 20
    assert Account(1).balance() == 10
    assert Account.balance.cache_info().hits == 1


def test_unstorable_result_is_returned_logged_once_and_counted(cachekit_log):
    class Opaque:
        pass

    runs = []

    @cache
    def make(x):
        runs.append(x)
        return Opaque()

    first, second = make(1), make(1)
    assert isinstance(first, Opaque) and isinstance(second, Opaque)
    assert runs == [1, 1]
    stats = make.cache_stats()
    assert stats["store_errors"] == 2 and stats["entries"] == 0
    assert metrics.snapshot()["store_error"] == 2
    records = [r for r in cachekit_log.records if "make" in r.getMessage()]
    assert len(records) == 1
    assert "Opaque" in records[0].getMessage()


def test_unkeyable_argument_runs_uncached(cachekit_log):
    class Opaque:
        pass

    @cache
    @counting
    def f(x):
        return 7

    assert f(Opaque()) == 7 and f(Opaque()) == 7
    assert len(f.__wrapped__.calls) == 2
    assert f.cache_stats()["key_errors"] == 2
    assert f.cache_info().misses == 2
    assert len([r for r in cachekit_log.records if "cache key" in r.getMessage()]) == 1


def test_baseexception_from_function_propagates():
    @cache
    def f():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        f()


def test_dedicated_store_bounds():
    @cache(l1=L1CacheConfig(max_entries=2))
    @counting
    def f(x):
        return x

    for i in (1, 2, 3, 1):
        f(i)
    assert len(f.__wrapped__.calls) == 4  # 1 was evicted by 3
    assert f.cache_info().maxsize == 2
    assert f.store is not cache(lambda: 1).store


def test_functions_share_default_store_without_collisions():
    @cache
    def f(x):
        return ("f", x)

    @cache
    def g(x):
        return ("g", x)

    assert f(1) == ("f", 1) and g(1) == ("g", 1) and f(1) == ("f", 1)
    assert f.store is g.store
    f.cache_clear()
    assert g.cache_info().currsize == 1


def test_copy_false_shares_mutable_results_like_lru_cache():
    @cache(copy=False)
    def f():
        return [1]

    assert f() is f()


def test_dropping_the_function_frees_its_entries():
    @cache
    def f():
        return [1, 2, 3]

    store = f.store
    before = len(store)
    f()
    assert len(store) == before + 1
    ref = weakref.ref(f)
    del f
    gc.collect()
    assert ref() is None
    assert len(store) == before


def test_concurrent_callers_get_consistent_values():
    @cache
    def f(x):
        return x * 3

    errors = []

    def worker():
        try:
            for i in range(5000):
                assert f(i % 50) == (i % 50) * 3
        except AssertionError as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    info = f.cache_info()
    assert info.hits + info.misses == 40000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ttl": -1}, "ttl"),
        ({"ttl": "10"}, "ttl"),
        ({"namespace": "has space"}, "namespace"),
        ({"backend": "redis://localhost"}, "backend"),
        ({"serializer": "no_such_format"}, "serializer"),
        ({"stale_ttl": -1}, "stale_ttl"),
        ({"no_such_option": 1}, "unknown"),
        ({"l1": L1CacheConfig(enabled=False)}, "l1"),
        ({"l1_max_entries": 0}, "max_entries"),
        ({"integrity_checking": "yes"}, "integrity_checking"),
    ],
)
def test_misconfiguration_fails_at_decoration(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        cache(**kwargs)(lambda x: x)


def test_configuration_error_is_a_value_error():
    with pytest.raises(ValueError):
        cache(ttl=0)(lambda: 1)


def test_default_ttl_from_environment(monkeypatch):
    from cachekit.config import reset_settings

    monkeypatch.setenv("CACHEKIT_DEFAULT_TTL", "0.05")
    monkeypatch.setenv("CACHEKIT_NAMESPACE", "envns")
    reset_settings()
    runs = []

    @cache
    def f():
        runs.append(1)
        return len(runs)

    assert f() == 1 and f() == 1
    assert f.cache_key().startswith("envns:")
    time.sleep(0.08)
    assert f() == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backend": object()}, "drop backend="),
        ({"backend": "redis://localhost"}, "drop backend="),
        ({"serializer": "msgpack"}, "drop serializer="),
        ({"serializer": "arrow"}, "drop serializer="),
        ({"integrity_checking": False}, "drop integrity_checking="),
        ({"config": DecoratorConfig(integrity_checking=False)}, "drop integrity_checking="),
    ],
)
def test_local_refuses_what_it_cannot_honour(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        cache.local(**kwargs)(lambda x: x)


def test_local_refuses_serializer_objects_and_encryption():
    from cachekit.config import EncryptionConfig
    from cachekit.serializers import EncryptionWrapper, StandardSerializer

    for serializer in (StandardSerializer(), EncryptionWrapper(master_key="a1" * 32)):
        with pytest.raises(ConfigurationError, match="drop serializer="):
            cache.local(serializer=serializer)(lambda x: x)
    enc = EncryptionConfig(enabled=True, master_key="a1" * 32)
    with pytest.raises(ConfigurationError, match="does not encrypt"):
        cache.local(encryption=enc)(lambda x: x)
    with pytest.raises(ConfigurationError, match="encryption must be an EncryptionConfig"):
        cache.local(encryption=True)(lambda x: x)


def test_local_accepts_its_defaults():
    f = cache.local(backend=None, serializer="default", integrity_checking=True, ttl=5)(
        counting(lambda x: x)
    )
    assert f(1) == f(1) == 1 and f.cache_info().hits == 1


@pytest.mark.parametrize("intent", [cache, cache.local])
def test_l1_disabled_by_environment_runs_every_call(monkeypatch, intent):
    from cachekit.config import reset_settings

    monkeypatch.setenv("CACHEKIT_L1_ENABLED", "false")
    reset_settings()
    f = intent(counting(lambda x: [x]))
    assert f(1) == f(1) == [1]
    assert len(f.__wrapped__.calls) == 2
    info = f.cache_info()
    assert (info.hits, info.misses) == (0, 2)
    assert f.cache_stats()["store_errors"] == 0 and f.cache_stats()["entries"] == 0
    assert f.invalidate_cache(1) is False
    f.cache_clear()
    monkeypatch.setenv("CACHEKIT_L1_ENABLED", "true")
    reset_settings()
    g = intent(counting(lambda x: [x]))
    assert g(1) == g(1) and len(g.__wrapped__.calls) == 1


def test_l1_disabled_by_environment_secure(monkeypatch):
    from cachekit.config import reset_settings

    monkeypatch.setenv("CACHEKIT_L1_ENABLED", "0")
    reset_settings()
    f = cache.secure(master_key="a1" * 32)(counting(lambda x: x))
    assert f(1) == f(1) == 1 and len(f.__wrapped__.calls) == 2


def test_cycle_through_a_cached_value():
    """docs/design.md: collected with a store of its own; the shared store
    keeps it until the entry goes."""

    def make(**options):
        @cache.local(**options)
        def f(x):
            return [x]

        value = f(1)
        value.append(f)  # reference caching: the entry now holds f
        assert f(1) is value
        return weakref.ref(f)

    @cache
    def g(x):
        return [x]

    g(1).append(g)  # plain @cache stored a private copy: no cycle
    assert g(1) == [1]

    own = make(l1=L1CacheConfig(max_entries=10))
    gc.collect()
    assert own() is None
    shared = make()
    gc.collect()
    assert shared() is not None
    shared().cache_clear()
    gc.collect()
    assert shared() is None


def test_metrics_snapshot_holds_counts_by_kind():
    metrics.reset()
    assert metrics.snapshot() == {}

    @cache
    def f(x):
        return object() if x == "bad" else x

    f(object())  # key_error
    f("bad")  # store_error
    f(1)

    @cache.secure(master_key="a1" * 32)
    def g(x):
        return x

    g(1)
    g._poke(b"not an entry", 1)
    g(1)  # decrypt_error
    snap = metrics.snapshot()
    assert snap == {"key_error": 1, "store_error": 1, "decrypt_error": 1}
    snap["key_error"] = 99
    assert metrics.snapshot()["key_error"] == 1
    metrics.reset()
    assert metrics.snapshot() == {}
