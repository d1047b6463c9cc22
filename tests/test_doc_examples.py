"""Every ```python block in README.md and docs/*.md runs here.

A block made only of decorator lines (the option tables' "forms") is applied,
line by line, to a small function that is then called twice. Other blocks run
as written, in a namespace holding what the surrounding text defines (a fake
`db`, a master key, the documented example entry, `redis_url` of a running
redis-server...).
"""

from __future__ import annotations

import contextvars
import re
from pathlib import Path

import pytest

import cachekit
from cachekit import DecoratorConfig, EncryptionConfig, L1CacheConfig, cache
from cachekit._core import encode_entry
from redis_topology import redis_cluster  # noqa: F401 (session fixture, docs/cluster.md)

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HEX_KEY = "ab" * 32


def blocks():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text.count("\n", 0, m.start()) + 1
            yield pytest.param(m.group(1), id=f"{path.name}:{line}")


def _is_decorator_list(code: str) -> bool:
    lines = [ln.split("#")[0].strip() for ln in code.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("import ", "from "))]
    return bool(lines) and all(ln.startswith("@") for ln in lines)


class FakeDb:
    def load_user(self, user_id):
        return {"id": user_id, "name": f"user-{user_id}"}

    def load_ssn(self, user_id):
        return "078-05-1120"


def namespace(monkeypatch):
    from test_format_vectors import V  # the documented encrypted example

    monkeypatch.setenv("CACHEKIT_MASTER_KEY", HEX_KEY)
    tenant_var = contextvars.ContextVar("tenant", default="acme")
    return {
        "cache": cache,
        "cachekit": cachekit,
        "DecoratorConfig": DecoratorConfig,
        "EncryptionConfig": EncryptionConfig,
        "L1CacheConfig": L1CacheConfig,
        "hex_key": HEX_KEY,
        "tenant_var": tenant_var,
        "current_tenant": tenant_var.get,
        "db": FakeDb(),
        # docs/format.md's encrypted example
        "entry": V["entry"],
        "master_key": V["master_key"],
        "tenant": V["tenant"],
        "cache_key": V["cache_key"],
        "dek": V["dek"],
    }


@pytest.mark.parametrize("code", list(blocks()))
def test_doc_example_runs(code, monkeypatch, request):
    ns = namespace(monkeypatch)
    if "redis_url" in code:  # docs/usage.md's Redis examples: a real server
        server = request.getfixturevalue("redis_server")
        ns["redis_url"] = server.url
    if "cache_dir" in code:  # docs/backends.md: a FileBackend directory
        ns["cache_dir"] = request.getfixturevalue("tmp_path") / "filecache"
    if "cluster_url" in code:  # docs/cluster.md: the session's real cluster
        nodes = request.getfixturevalue("redis_cluster").live()
        ns["cluster_url"] = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes[:2])
    if "memcached_servers" in code:  # docs/backends.md: a real memcached
        ns["memcached_servers"] = [request.getfixturevalue("memcached_server").address]
    if _is_decorator_list(code):
        preamble = [ln for ln in code.splitlines() if ln.startswith(("import ", "from "))]
        exec("\n".join(preamble), ns)
        for line in code.splitlines():
            expr = line.split("#")[0].strip()
            if not expr.startswith("@"):
                continue
            fn_ns = dict(ns)
            exec(f"{expr}\ndef f(user_id, **kw):\n    return {{'id': user_id}}\n", fn_ns)
            f = fn_ns["f"]
            assert f(1) == f(1) == {"id": 1}, expr
            assert f.cache_info().hits == 1, expr
        return
    exec(compile(code, "<doc>", "exec"), ns)
    if "verify" in ns:  # format.md's checksum recipe, checked on a real entry
        plain = b"\x81\xa1a\x01"
        frame = encode_entry({"a": 1}, compress_min=1 << 30)
        assert ns["verify"](frame, frame[len(frame) - len(plain):])
    if "plaintext" in ns and "dek" in ns:  # format.md's decryption recipes
        assert ns["plaintext"] == bytes.fromhex("81a373736eab3037382d30352d31313230")
