"""Intent presets: documented defaults that explicit arguments override."""

import pytest

from cachekit import DecoratorConfig, cache
from cachekit.config.presets import PRESETS


@pytest.mark.parametrize("name", ["minimal", "production", "secure", "dev", "test", "local"])
def test_every_intent_decorates_and_caches(name):
    deco = getattr(cache, name)
    kwargs = {"master_key": "ab" * 32} if name == "secure" else {}
    runs = []

    @deco(**kwargs)
    def f(x):
        runs.append(x)
        return x * 2

    assert f(2) == 4 and f(2) == 4 and runs == [2]


def test_presets_are_their_documented_defaults():
    assert PRESETS["minimal"]().circuit_breaker.enabled is False
    assert PRESETS["minimal"]().backpressure.enabled is False
    assert PRESETS["production"]().stampede_lease == 10.0
    assert PRESETS["production"]().circuit_breaker.enabled is True
    assert PRESETS["dev"]().circuit_breaker.recovery_timeout == 5.0
    assert PRESETS["test"]().backend is None
    assert PRESETS["secure"]().encryption.enabled is True


def test_explicit_arguments_override_the_preset():
    @cache.production(stampede_lease=2, ttl=30)
    def f(x):
        return x

    f(1)

    @cache.test(l1_max_entries=5)
    def g(x):
        return x

    for i in range(10):
        g(i)
    assert g.cache_info().maxsize == 5


def test_the_test_preset_never_uses_the_environments_redis(monkeypatch, redis_server):
    monkeypatch.setenv("CACHEKIT_REDIS_URL", redis_server.url)
    from cachekit.config import reset_settings

    reset_settings()

    @cache.test
    def f(x):
        return x

    f(1)
    assert f.cache_stats()["l2_hits"] == 0
    from cachekit._core import RedisClient

    assert not RedisClient(redis_server.url).exists(f.cache_key(1).encode())


def test_decorator_config_presets():
    assert DecoratorConfig.minimal().circuit_breaker.enabled is False
    assert DecoratorConfig.production(ttl=5).ttl == 5
    c = DecoratorConfig.secure(master_key="ab" * 32)
    assert c.encryption.enabled and "ab" * 32 not in repr(c)

    @cache(config=DecoratorConfig.secure(master_key="ab" * 32))
    def f(x):
        return x

    assert f(1) == 1 and f.keyring is not None
