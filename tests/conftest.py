import logging

import pytest

from cachekit import metrics
from cachekit.config import reset_settings


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    """Every test starts from default settings and empty metrics."""
    for var in list(__import__("os").environ):
        if var.startswith("CACHEKIT_"):
            monkeypatch.delenv(var)
    reset_settings()
    metrics.reset()
    yield
    reset_settings()


@pytest.fixture
def cachekit_log(caplog):
    caplog.set_level(logging.WARNING, logger="cachekit")
    return caplog


# ------------------------------------------------------------- redis-server
# Session-scoped servers, started on first use (tests/redis_server.py).

from pathlib import Path  # noqa: E402

from redis_server import (  # noqa: E402
    REDIS_SERVER,
    RedisServer,
    make_ca,
    make_client_cert,
    make_server_cert,
    tls_supported,
)  # noqa: E402

REDIS_PASSWORD = "s3cr3t-Pa55"


def _server(request, **kwargs) -> RedisServer:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(**kwargs).start()
    request.addfinalizer(server.cleanup)
    return server


@pytest.fixture(scope="session")
def redis_server(request) -> RedisServer:
    """Plain TCP on 127.0.0.1, no password."""
    return _server(request)


@pytest.fixture(scope="session")
def redis_unix_server(request) -> RedisServer:
    """Listening on a unix socket (and a TCP port)."""
    return _server(request, unix=True)


@pytest.fixture(scope="session")
def redis_auth_server(request) -> RedisServer:
    """--requirepass REDIS_PASSWORD; add ACL users at run time."""
    return _server(request, password=REDIS_PASSWORD)


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> dict[str, str]:
    """A CA, a server certificate for localhost/127.0.0.1 it signed, a
    client certificate it signed (`client_cert`, `client_key`), and a
    second, unrelated CA (`wrong_ca`)."""
    if not tls_supported():
        pytest.skip("this redis-server was built without TLS support")
    d: Path = tmp_path_factory.mktemp("tls")
    ca = make_ca(d, "cachekit-test-ca")
    certs = make_server_cert(d, ca)
    certs["wrong_ca"] = make_ca(d, "unrelated-ca")["ca"]
    client = make_client_cert(d, ca)
    certs["client_cert"], certs["client_key"] = client["cert"], client["key"]
    return certs


@pytest.fixture(scope="session")
def redis_tls_server(request, tls_certs) -> RedisServer:
    """TLS only (--port 0), on 127.0.0.1 and 127.0.0.2 (the certificate
    names only the first, for host-name checks)."""
    return _server(request, tls=tls_certs, bind=("127.0.0.1", "127.0.0.2"))


@pytest.fixture(scope="session")
def memcached_server():
    """One memcached for the session (tests/memcached_server.py)."""
    from tests.memcached_server import MEMCACHED, MemcachedServer

    if MEMCACHED is None:
        pytest.skip("memcached is not installed")
    server = MemcachedServer().start()
    yield server
    server.stop()
