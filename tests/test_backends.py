"""cachekit.backends: RedisBackend against real redis-server processes
(tests/redis_server.py fixtures), RedisBackendConfig and its environment,
resolve_backend and the default backend, the BaseBackend protocol, fork
safety, BackendError's error_type mapping, and the reliability configs."""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import pytest
from conftest import REDIS_PASSWORD
from redis_server import free_port

import cachekit
from cachekit import DecoratorConfig, cache
from cachekit import backends as backends_pkg
from cachekit.backends import (
    BackendError,
    BackendErrorType,
    BaseBackend,
    CapabilityNotAvailableError,
    RedisBackend,
    TTLInspectableBackend,
    get_default_backend,
    resolve_backend,
    set_default_backend,
)
from cachekit.backends.default import NO_REDIS_MESSAGE, _reset_for_tests
from cachekit.backends.errors import UnsupportedTenantError, redact_cache_key
from cachekit.backends.redis.config import RedisBackendConfig
from cachekit.config import UNSET, BackpressureConfig, CircuitBreakerConfig, SecretStr
from cachekit.config.settings import CachekitConfig
from cachekit.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def fresh_backends(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    _reset_for_tests()
    yield
    _reset_for_tests()


@pytest.fixture
def backend(redis_server):
    redis_server.flushall()
    with RedisBackend(redis_server.url) as b:
        yield b


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}"


class DictBackend:
    """A user backend: the five BaseBackend methods over a dict."""

    def __init__(self):
        self.data: dict[str, bytes] = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value, ttl=None):
        self.data[key] = value

    def delete(self, key):
        return self.data.pop(key, None) is not None

    def exists(self, key):
        return key in self.data

    def health_check(self):
        return True, {"backend": "dict"}


class NoExists:
    def get(self, key): ...
    def set(self, key, value, ttl=None): ...
    def delete(self, key): ...
    def health_check(self): ...


# ------------------------------------------------------------ RedisBackend


def test_round_trip(backend):
    assert backend.get("missing") is None
    backend.set("k", b"value")
    assert backend.get("k") == b"value"
    backend.set("empty", b"")
    assert backend.get("empty") == b""
    backend.set("ключ:é", b"\x00\xff" * 1000)  # str keys are UTF-8 encoded
    assert backend._client.get("ключ:é".encode()) == b"\x00\xff" * 1000
    with pytest.raises(TypeError, match="str"):
        backend.get(b"k")  # type: ignore[arg-type]


def test_delete_exists(backend):
    assert backend.exists("k") is False
    assert backend.delete("k") is False
    backend.set("k", b"v")
    assert backend.exists("k") is True
    assert backend.delete("k") is True
    assert backend.exists("k") is False and backend.get("k") is None


def test_ttl_in_seconds(backend):
    backend.set("t", b"v", ttl=30)
    assert 29_000 < backend._client.pttl(b"t") <= 30_000  # seconds, sent as ms
    assert backend.get_ttl("t") == 30
    backend.set("forever", b"v")
    assert backend.get_ttl("forever") is None and backend.get_ttl("absent") is None
    assert backend.refresh_ttl("forever", 100) is True
    assert 99 <= backend.get_ttl("forever") <= 100
    assert backend.refresh_ttl("absent", 100) is False
    backend.set("short", b"v", ttl=0.2)  # fractions of a second are kept
    time.sleep(0.35)
    assert backend.get("short") is None
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(ValueError, match="ttl"):
            backend.set("k", b"v", ttl=bad)
    assert isinstance(backend, TTLInspectableBackend)


def test_health_check(backend):
    ok, details = backend.health_check()
    assert ok is True and details["backend"] == "redis" and details["error"] is None
    assert details["latency_ms"] >= 0


def test_health_check_server_down():
    config = RedisBackendConfig(redis_url=dead_url(), socket_connect_timeout=0.5)
    b = RedisBackend(config)
    ok, details = b.health_check()  # no exception
    assert ok is False and details["backend"] == "redis"
    assert "BackendError" in details["error"]
    with pytest.raises(BackendError):
        b.get("k")
    b.close()
    assert b.health_check()[0] is False


def test_health_check_after_server_stops(redis_server):
    from redis_server import RedisServer

    server = RedisServer().start()
    try:
        b = RedisBackend(server.url)
        assert b.health_check()[0] is True
        server.stop()
        ok, details = b.health_check()
        assert ok is False and details["error"]
    finally:
        server.cleanup()


def test_password_masked(redis_auth_server):
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_auth_server.port}"
    b = RedisBackend(url)
    b.set("k", b"v")
    assert b.get("k") == b"v"
    config_texts = [repr(b.config), str(b.config), repr(b.config.redis_url)]
    for text in [repr(b), str(b), *config_texts]:
        assert REDIS_PASSWORD not in text
    assert "127.0.0.1" in repr(b)  # the host still shows
    assert all("**********" in t for t in config_texts)
    b.close()
    assert "closed" in repr(b)


def test_wrong_password_is_an_authentication_error(redis_auth_server):
    b = RedisBackend(f"redis://:wrong@127.0.0.1:{redis_auth_server.port}")
    with pytest.raises(BackendError) as info:
        b.get("k")
    err = info.value
    assert err.error_type is BackendErrorType.AUTHENTICATION and err.reason == "auth"
    assert err.is_transient is False and "wrong" not in str(err)
    assert b.health_check()[0] is False


def test_constructor_forms(redis_server, monkeypatch):
    monkeypatch.setenv("CACHEKIT_REDIS_URL", redis_server.url)
    monkeypatch.setenv("CACHEKIT_CONNECTION_POOL_SIZE", "7")
    assert RedisBackend().config.connection_pool_size == 7  # all from the environment
    b = RedisBackend(SecretStr(dead_url()))  # the URL given, the rest from the environment
    assert b.config.connection_pool_size == 7 and "pool_size=7" in repr(b)
    b = RedisBackend(RedisBackendConfig(redis_url=redis_server.url))  # taken as it is
    assert b.config.connection_pool_size == 50
    assert b.health_check()[0] is True
    with pytest.raises(ConfigurationError, match="client_provider"):
        RedisBackend(redis_server.url, client_provider=object())
    with pytest.raises(ConfigurationError, match="RedisBackendConfig"):
        RedisBackend(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="port must be 1-65535") as info:
        RedisBackend("redis://:hunter2@127.0.0.1:99999")
    assert "hunter2" not in str(info.value)


def test_tls_options(redis_tls_server, tls_certs):
    b = RedisBackend(RedisBackendConfig(redis_url=redis_tls_server.url,
                                        ssl_ca_certs=tls_certs["ca"]))
    b.set("k", b"v")
    assert b.get("k") == b"v"
    wrong = RedisBackend(RedisBackendConfig(redis_url=redis_tls_server.url,
                                            ssl_ca_certs=tls_certs["wrong_ca"]))
    assert wrong.health_check()[0] is False
    with pytest.raises(ConfigurationError, match=r"TLS files refused: .*ssl_ca_certs"):
        RedisBackend(RedisBackendConfig(redis_url=redis_tls_server.url,
                                        ssl_ca_certs="/nonexistent/ca.pem"))


# ------------------------------------------------------ RedisBackendConfig


def test_config_defaults():
    c = RedisBackendConfig()
    assert c.redis_url.get_secret_value() == "redis://localhost:6379"
    assert (c.connection_pool_size, c.socket_timeout, c.socket_connect_timeout) == (50, 5.0, 5.0)
    assert c.socket_keepalive is True and c.disable_hiredis is False
    assert c.ssl_check_hostname is True and c.ssl_ca_certs is None
    assert [f.name for f in dataclasses.fields(c)][:6] == [
        "redis_url", "connection_pool_size", "socket_timeout", "socket_connect_timeout",
        "socket_keepalive", "disable_hiredis",
    ]


def test_from_env_precedence():
    env = {"REDIS_URL": "redis://fallback:1"}
    assert RedisBackendConfig.from_env(env).redis_url.get_secret_value() == "redis://fallback:1"
    env["CACHEKIT_REDIS_URL"] = "redis://cachekit:2"
    assert RedisBackendConfig.from_env(env).redis_url.get_secret_value() == "redis://cachekit:2"
    c = RedisBackendConfig.from_env(env, redis_url="redis://override:3")
    assert c.redis_url.get_secret_value() == "redis://override:3"
    assert RedisBackendConfig.from_env({}).redis_url.get_secret_value() == "redis://localhost:6379"
    c = RedisBackendConfig.from_env({
        "CACHEKIT_CONNECTION_POOL_SIZE": "8", "CACHEKIT_SOCKET_TIMEOUT": "0.25",
        "CACHEKIT_SOCKET_CONNECT_TIMEOUT": "1.5",
    })
    assert (c.connection_pool_size, c.socket_timeout, c.socket_connect_timeout) == (8, 0.25, 1.5)
    s = CachekitConfig.from_env(env)
    assert s.redis_url.get_secret_value() == "redis://cachekit:2"
    assert s.get_safe_repr()["redis_url"] == "**********"


@pytest.mark.parametrize("env, var", [
    ({"CACHEKIT_REDIS_URL": "http://user:hunter2@host"}, "CACHEKIT_REDIS_URL"),
    ({"REDIS_URL": "hunter2"}, "REDIS_URL"),
    ({"CACHEKIT_CONNECTION_POOL_SIZE": "0"}, "CACHEKIT_CONNECTION_POOL_SIZE"),
    ({"CACHEKIT_SOCKET_TIMEOUT": "-1"}, "CACHEKIT_SOCKET_TIMEOUT"),
    ({"CACHEKIT_SOCKET_CONNECT_TIMEOUT": "soon"}, "CACHEKIT_SOCKET_CONNECT_TIMEOUT"),
])
def test_from_env_errors_name_the_variable(env, var):
    with pytest.raises(ConfigurationError, match=var) as info:
        RedisBackendConfig.from_env(env)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"redis_url": "http://user:hunter2@host"}, "redis://, rediss://, unix://, redis\\+cluster:// or redis\\+sentinel://"),
    ({"redis_url": 5}, "str or SecretStr"),
    ({"connection_pool_size": 0}, "connection_pool_size must be a positive int"),
    ({"connection_pool_size": True}, "connection_pool_size"),
    ({"socket_timeout": 0}, "socket_timeout must be a positive number of seconds"),
    ({"socket_connect_timeout": float("nan")}, "socket_connect_timeout"),
    ({"ssl_certfile": "/c.pem"}, "ssl_certfile and ssl_keyfile together"),
    ({"ssl_ca_certs": ""}, "ssl_ca_certs must be a file path"),
    ({"ssl_check_hostname": "yes"}, "ssl_check_hostname"),
    ({"socket_keepalive": False}, "leave it at True"),
    ({"disable_hiredis": True}, "leave it at False"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ConfigurationError, match=match) as info:
        RedisBackendConfig(**kwargs)
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="unknown RedisBackendConfig option"):
        RedisBackendConfig.from_env({}, pool=1)


# ------------------------------------------------------ protocol, resolve


def test_base_backend_protocol():
    assert isinstance(DictBackend(), BaseBackend)
    assert not isinstance(NoExists(), BaseBackend)
    assert isinstance(RedisBackend(dead_url()), BaseBackend)
    assert backends_pkg.missing_backend_methods(NoExists()) == ["exists"]
    assert backends_pkg.missing_backend_methods(object()) == [
        "get", "set", "delete", "exists", "health_check"]


def test_resolve_explicit():
    settings = CachekitConfig.from_env({"CACHEKIT_REDIS_URL": dead_url()})
    assert resolve_backend(None, settings) is None  # L1 only, even with Redis configured
    user = DictBackend()
    assert resolve_backend(user, settings) is user
    with pytest.raises(ConfigurationError, match="NoExists lacks exists"):
        resolve_backend(NoExists(), settings)
    with pytest.raises(ConfigurationError, match=r"not the class DictBackend: pass DictBackend\(...\)"):
        resolve_backend(DictBackend, settings)  # forgot the parentheses


def test_resolve_default_backend():
    settings = CachekitConfig.from_env({"CACHEKIT_REDIS_URL": dead_url()})
    user = DictBackend()
    set_default_backend(user)
    assert get_default_backend() is user
    assert resolve_backend(UNSET, settings) is user
    assert resolve_backend(None, settings) is None
    set_default_backend(None)
    assert get_default_backend() is None
    with pytest.raises(ConfigurationError, match="exists"):
        set_default_backend(NoExists())  # type: ignore[arg-type]


def test_resolve_from_settings_one_backend_per_url(redis_server):
    a = CachekitConfig.from_env({"REDIS_URL": redis_server.url})
    first = resolve_backend(UNSET, a)
    assert isinstance(first, RedisBackend) and first.health_check()[0] is True
    assert resolve_backend(UNSET, CachekitConfig.from_env({"CACHEKIT_REDIS_URL": redis_server.url})) is first
    other = resolve_backend(UNSET, CachekitConfig.from_env({"REDIS_URL": dead_url()}))
    assert other is not first
    pooled = resolve_backend(UNSET, CachekitConfig.from_env(
        {"REDIS_URL": redis_server.url, "CACHEKIT_CONNECTION_POOL_SIZE": "3"}))
    assert pooled is not first and pooled.config.connection_pool_size == 3


def test_resolve_nothing_configured_logs_once(caplog):
    caplog.set_level(logging.INFO, logger="cachekit")
    settings = CachekitConfig.from_env({})
    assert resolve_backend(UNSET, settings) is None
    assert resolve_backend(UNSET, settings) is None
    lines = [r for r in caplog.records if r.name == "cachekit" and r.levelno == logging.INFO]
    assert [r.getMessage() for r in lines] == [NO_REDIS_MESSAGE]
    assert NO_REDIS_MESSAGE == ("no Redis configured (REDIS_URL / CACHEKIT_REDIS_URL unset): "
                                "caching in the in-process L1 only")


def test_decorator_config_backend_validation(monkeypatch):
    DecoratorConfig(backend=None).validate()
    DecoratorConfig().validate()
    with pytest.raises(ConfigurationError, match="NoExists lacks exists"):
        DecoratorConfig(backend=NoExists()).validate()
    with pytest.raises(ConfigurationError, match="lacks get, set, delete, exists"):
        cache(backend="redis://localhost")(lambda: 1)
    DecoratorConfig(backend=DictBackend()).validate()
    assert cache(backend=DictBackend())(lambda: 1)() == 1


# ------------------------------------------------------------------ fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")
def test_fork_child_uses_the_default_backend(redis_server):
    """Backends built in the parent (set as default, and built from the
    environment) serve a forked child over its own connections, and the
    parent's connections stay in step (the C pool's fork handling)."""
    redis_server.flushall()
    explicit = RedisBackend(redis_server.url)
    from_env = resolve_backend(UNSET, CachekitConfig.from_env({"REDIS_URL": redis_server.url}))
    set_default_backend(explicit)
    explicit.set("parent", b"1")
    from_env.set("parent-env", b"1")  # both hold an open connection now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        status = b"fail"
        try:
            b = get_default_backend()
            env_b = from_env  # the shared backend built from the environment
            for _ in range(20):
                b.set("child", b"2")
                env_b.set("child-env", b"2")
                assert b.get("parent") == b"1" and env_b.get("parent-env") == b"1"
            if b is explicit and b.health_check()[0] and env_b.health_check()[0]:
                status = b"ok"
        finally:
            os.write(write, status)
            os._exit(0)
    os.close(write)
    _, code = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"ok" and code == 0
    os.close(read)
    for _ in range(20):  # the parent's connections were not disturbed
        assert explicit.get("child") == b"2" and from_env.get("child-env") == b"2"
        assert explicit.get("parent") == b"1"
    assert explicit.health_check()[0] is True


# ------------------------------------------------------------ BackendError


@pytest.mark.parametrize("reason, kind, transient", [
    ("timeout", BackendErrorType.TIMEOUT, True),
    ("connection", BackendErrorType.TRANSIENT, True),
    ("auth", BackendErrorType.AUTHENTICATION, False),
    ("protocol", BackendErrorType.PERMANENT, False),
    ("reply_too_large", BackendErrorType.PERMANENT, False),
    ("server", BackendErrorType.PERMANENT, False),
])
def test_error_type_mapping(reason, kind, transient):
    err = BackendError("boom")
    err.error_type = reason  # what the C binding does on each error it raises
    assert err.error_type is kind and err.reason == reason and err.is_transient is transient


def test_backend_error_from_the_c_client():
    b = RedisBackend(RedisBackendConfig(redis_url=dead_url(), socket_connect_timeout=0.5))
    with pytest.raises(cachekit.BackendError) as info:
        b.set("k", b"v")
    assert type(info.value) is cachekit._core.BackendError  # one class everywhere
    assert info.value.error_type is BackendErrorType.TRANSIENT
    assert info.value.reason == "connection" and info.value.is_transient


def test_server_error_is_permanent(backend, redis_server):
    redis_server.command(b"LPUSH", b"alist", b"x")
    with pytest.raises(BackendError) as info:
        backend.get("alist")  # WRONGTYPE
    assert info.value.error_type is BackendErrorType.PERMANENT and info.value.reason == "server"


def test_backend_error_raised_by_python_code():
    assert BackendError.error_type is None  # on the class, as the C core defines it
    err = BackendError("down")
    assert err.error_type is BackendErrorType.UNKNOWN and err.reason is None
    assert not err.is_transient and str(err) == "down"
    err = BackendError("slow", error_type=BackendErrorType.TIMEOUT, operation="get",
                       key="user:alice@example.com")
    assert err.is_transient and err.operation == "get"
    assert err.key == redact_cache_key("user:alice@example.com") and "alice" not in err.key
    assert BackendError("x", error_type="transient").error_type is BackendErrorType.TRANSIENT
    with pytest.raises(TypeError, match="BackendErrorType"):
        BackendError("x", error_type=3)
    cap = CapabilityNotAvailableError("no locks", error_type=BackendErrorType.PERMANENT)
    assert isinstance(cap, BackendError) and isinstance(cap, cachekit.CachekitError)
    assert issubclass(UnsupportedTenantError, TypeError)
    assert [m.name for m in BackendErrorType] == [
        "TRANSIENT", "PERMANENT", "TIMEOUT", "AUTHENTICATION", "UNKNOWN"]
    assert redact_cache_key(b"k") == redact_cache_key("k") and redact_cache_key("k").startswith("key#")


# ------------------------------------------------------- reliability configs


def test_circuit_breaker_config_spellings():
    c = CircuitBreakerConfig()
    assert (c.enabled, c.failure_threshold, c.success_threshold, c.recovery_timeout,
            c.half_open_requests, c.excluded_error_types) == (True, 5, 3, 30.0, 3, ())
    assert c.timeout_seconds == 30.0
    assert CircuitBreakerConfig(timeout_seconds=10).recovery_timeout == 10
    assert CircuitBreakerConfig(recovery_timeout=12).timeout_seconds == 12
    with pytest.raises(ConfigurationError, match="same setting"):
        CircuitBreakerConfig(recovery_timeout=12, timeout_seconds=10)
    from cachekit.reliability import CircuitBreakerConfig as FromReliability

    assert FromReliability is CircuitBreakerConfig is cachekit.CircuitBreakerConfig
    for bad in ({"failure_threshold": 0}, {"success_threshold": 1.5}, {"recovery_timeout": -1},
                {"half_open_requests": True}, {"enabled": 1},
                {"excluded_error_types": (int,)}):
        with pytest.raises(ConfigurationError, match="circuit_breaker"):
            CircuitBreakerConfig(**bad).validate()


def test_backpressure_config():
    b = BackpressureConfig()
    assert (b.enabled, b.max_concurrent_requests, b.queue_size, b.timeout) == (True, 100, 1000, 0.1)
    for bad in ({"max_concurrent_requests": 0}, {"queue_size": -1}, {"timeout": 0},
                {"enabled": "yes"}):
        with pytest.raises(ConfigurationError, match="backpressure"):
            BackpressureConfig(**bad).validate()


def test_decorator_config_fields_follow_the_reference():
    names = [f.name for f in dataclasses.fields(DecoratorConfig)]
    reference = ["ttl", "stale_ttl", "swr_by_default", "namespace", "serializer",
                 "integrity_checking", "key", "interop", "refresh_ttl_on_get",
                 "ttl_refresh_threshold", "backend", "l1", "circuit_breaker", "backpressure",
                 "encryption"]  # the reference's monitoring is not built
    assert [n for n in names if n in reference] == reference
    config = DecoratorConfig()
    assert config.circuit_breaker == CircuitBreakerConfig()
    assert config.backpressure == BackpressureConfig()
    with pytest.raises(ConfigurationError, match="circuit_breaker must be a CircuitBreakerConfig"):
        DecoratorConfig(circuit_breaker={"enabled": False}).validate()
    with pytest.raises(ConfigurationError, match="backpressure.timeout"):
        cache(backpressure=BackpressureConfig(timeout=-1))(lambda: 1)
    f = cache(circuit_breaker=CircuitBreakerConfig(failure_threshold=2), backend=None)(lambda: 1)
    assert f() == 1


# ----------------------------------------------------------------- typing

TYPED_SAMPLE = '''
from cachekit.backends import BackendError, BaseBackend, RedisBackend, set_default_backend
from cachekit.backends.redis.config import RedisBackendConfig


class DictBackend:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self.data[key] = value

    def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def exists(self, key: str) -> bool:
        return key in self.data

    def health_check(self) -> tuple[bool, dict[str, object]]:
        return True, {}


redis: BaseBackend = RedisBackend(RedisBackendConfig(redis_url="redis://localhost"))
user: BaseBackend = DictBackend()
set_default_backend(user)
try:
    redis.get("k")
except BackendError as e:
    kind = e.error_type
    transient: bool = e.is_transient
'''


def test_backends_type_check(tmp_path):
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy not installed")
    sample = tmp_path / "sample.py"
    sample.write_text(TYPED_SAMPLE)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--cache-dir", str(tmp_path / ".mypy_cache"), str(sample)],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(root)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
