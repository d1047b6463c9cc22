"""Redis Cluster routing primitives of the C core (src/core/ck_redis_slots.c):
CRC16 and key slots against the Redis Cluster spec and a real cluster's
CLUSTER KEYSLOT, MOVED/ASK parsing (real MOVED errors from a real cluster
and hostile inputs), the CLUSTER SLOTS parser (a real reply and refused ones).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cachekit import _core
from redis_topology import redis_cluster  # noqa: F401 (session fixture)

slot = _core._cluster_key_slot
redirect = _core._cluster_parse_redirect
parse_slots = _core._cluster_parse_slots


def test_crc16_spec_vector() -> None:
    # The Redis Cluster spec: CRC16("123456789") = 0x31C3; slot = crc & 16383.
    assert slot(b"123456789") == 0x31C3 & 16383
    assert slot("123456789") == 0x31C3 & 16383


def test_hash_tags() -> None:
    base = slot(b"user1000")
    assert slot(b"{user1000}.following") == base
    assert slot(b"{user1000}.followers") == base
    assert slot(b"foo{user1000}bar{zap}") == base  # the first {...} only
    # An empty first tag hashes the whole key (the later {bar} is not used);
    # exact values for these are checked against a real cluster below.
    assert slot(b"foo{}{bar}") != slot(b"bar")
    assert slot(b"x{a}") == slot(b"y{a}") == slot(b"a")
    assert slot(b"") == 0


def _resp_int(raw: bytes) -> int:
    assert raw.startswith(b":"), raw
    return int(raw[1:].split(b"\r\n", 1)[0])


def test_slots_match_real_cluster_keyslot(redis_cluster) -> None:  # noqa: F811
    node = redis_cluster.nodes[0]
    rng = random.Random(16)
    keys = [b"foo{}{bar}", b"foo{{bar}}zap", b"foo{bar}{zap}", b"{", b"}{", b"a{b", b"{user1000}x",
            b"\x00\xff{\x01}", "ключ".encode()]
    keys += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(60)]
    keys += [b"pre{" + bytes([rng.choice(b"ab{}")]) * rng.randrange(4) + b"}post" for _ in range(20)]
    for k in keys:
        assert slot(k) == _resp_int(node.command(b"CLUSTER", b"KEYSLOT", k)), k


def test_parse_real_cluster_slots_and_moved(redis_cluster) -> None:  # noqa: F811
    nodes = redis_cluster.masters()  # replicas answer MOVED too, but own no range
    ranges = parse_slots(nodes[0].command(b"CLUSTER", b"SLOTS"))
    covered = sorted(s for (a, b, _h, _p) in ranges for s in range(a, b + 1))
    assert covered == list(range(16384))
    ports = {n.port for n in nodes}
    assert {p for (_a, _b, _h, p) in ranges} == ports
    assert all(h == "127.0.0.1" for (_a, _b, h, _p) in ranges)

    def owner(s: int) -> int:
        return next(p for (a, b, _h, p) in ranges if a <= s <= b)

    moved = 0
    for i in range(30):
        key = b"k%d" % i
        s = slot(key)
        for n in nodes:
            raw = n.command(b"GET", key)
            if n.port == owner(s):
                assert raw.startswith(b"$-1"), raw
                continue
            assert raw.startswith(b"-"), raw
            got = redirect(raw[1:].split(b"\r\n", 1)[0])
            assert got == ("MOVED", s, "127.0.0.1", owner(s))
            moved += 1
    assert moved == 60


def test_parse_redirect_forms() -> None:
    assert redirect(b"MOVED 3999 127.0.0.1:6381") == ("MOVED", 3999, "127.0.0.1", 6381)
    assert redirect(b"ASK 0 10.0.0.1:7000") == ("ASK", 0, "10.0.0.1", 7000)
    assert redirect(b"ASK 16383 ::1:7000") == ("ASK", 16383, "::1", 7000)
    assert redirect(b"MOVED 1 [fe80::1]:7000") == ("MOVED", 1, "fe80::1", 7000)
    assert redirect(b"MOVED 1 :7000") == ("MOVED", 1, "", 7000)  # same host
    assert redirect(b"MOVED 1 ?:7000") == ("MOVED", 1, "", 7000)
    assert redirect(b"MOVED 1 node-a.example:7000\r\n") == ("MOVED", 1, "node-a.example", 7000)
    for other in (b"ERR unknown", b"MOVEDX 1 a:1", b"ASKING", b"", b"TRYAGAIN x",
                  b"CLUSTERDOWN The cluster is down", b"READONLY You can't write"):
        assert redirect(other) is None


@pytest.mark.parametrize("bad", [
    b"MOVED", b"ASK", b"MOVED ", b"MOVED 16384 a:1", b"MOVED -1 a:1", b"MOVED 1a a:1",
    b"MOVED 99999999999 a:1", b"MOVED 1 a", b"MOVED 1 a:", b"MOVED 1 a:0", b"MOVED 1 a:65536",
    b"MOVED 1 a:+1", b"ASK 1 a b:1", b"ASK 1 " + b"h" * 256 + b":1", b"ASK 1 a\x00b:1",
    b"MOVED  1 a:1",
])
def test_parse_redirect_refuses(bad: bytes) -> None:
    with pytest.raises(ValueError):
        redirect(bad)


def _slots_reply(*ranges: tuple) -> bytes:
    out = [b"*%d\r\n" % len(ranges)]
    for r in ranges:
        out.append(b"*%d\r\n" % len(r))
        for part in r:
            if isinstance(part, int):
                out.append(b":%d\r\n" % part)
            else:
                out.append(_node(part))
    return b"".join(out)


def _node(part: tuple) -> bytes:
    out = [b"*%d\r\n" % len(part)]
    for x in part:
        if x is None:
            out.append(b"$-1\r\n")
        elif isinstance(x, int):
            out.append(b":%d\r\n" % x)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


def test_parse_slots_synthetic() -> None:
    raw = _slots_reply((0, 100, (b"10.0.0.1", 7000, b"id1"), (b"10.0.0.2", 7001, b"id2")),
                       (101, 16383, (b"?", 7002)), )
    assert parse_slots(raw) == [(0, 100, "10.0.0.1", 7000), (101, 16383, "", 7002)]
    assert parse_slots(_slots_reply((5, 5, (None, 1)))) == [(5, 5, "", 1)]
    assert parse_slots(b"*0\r\n") == []


@pytest.mark.parametrize("bad", [
    b"+OK\r\n", b"-ERR This instance has cluster support disabled\r\n", b"*1\r\n:1\r\n",
    _slots_reply((0, 16384, (b"a", 1))), _slots_reply((10, 5, (b"a", 1))),
    _slots_reply((-1, 5, (b"a", 1))), _slots_reply((0, 5, (b"a", 0))),
    _slots_reply((0, 5, (b"a", 65536))), _slots_reply((0, 5, (b"a",))),
    _slots_reply((0, 5, (1, 1))), _slots_reply((0, 5, (b"h" * 256, 1))),
    _slots_reply((0, 5, (b"a", 1)), (5, 9, (b"b", 2))),  # overlap
    b"*1\r\n*2\r\n:0\r\n:5\r\n", b"*1\r\n*3\r\n:0\r\n:5\r\n",  # truncated
])
def test_parse_slots_refuses(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse_slots(bad)


def _dbsize(node) -> int:
    return _resp_int(node.command(b"DBSIZE"))


def test_single_node_client_on_a_cluster_never_fails_the_caller(redis_cluster) -> None:  # noqa: F811
    # docs/cluster.md: until the cluster client exists, a redis:// URL to
    # one cluster node stores only the keys whose slots that node owns;
    # the others fail with MOVED (a counted miss). No exception, no wrong value.
    from cachekit import cache
    from cachekit.backends import RedisBackend

    node = redis_cluster.nodes[0]
    for n in redis_cluster.nodes:
        n.command(b"FLUSHALL")
    calls = []
    with RedisBackend(f"redis://127.0.0.1:{node.port}") as backend:
        @cache(backend=backend, ttl=60, namespace="clustertest")
        def f(x: int) -> tuple[str, int]:
            calls.append(x)
            return ("v", x)

        for _ in range(2):
            for x in range(60):
                assert f(x) == ("v", x)
    assert _dbsize(node) > 0
    assert all(_dbsize(n) == 0 for n in redis_cluster.nodes[1:])


REGRESSIONS = sorted((Path(__file__).resolve().parent.parent / "fuzz" / "regressions"
                      / "redis_slots").glob("*"))


def test_slot_regressions_exist() -> None:
    assert len(REGRESSIONS) >= 5


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_fuzz_regressions_refused_or_parsed(path: Path) -> None:
    data = path.read_bytes()
    assert 0 <= slot(data) < 16384
    for parse in (redirect, parse_slots):
        try:
            parse(data)
        except ValueError:
            pass
    if path.name.startswith("hostile-"):  # each is built to be refused by one parser
        with pytest.raises(ValueError):
            (parse_slots if data.startswith(b"*") else redirect)(data)
