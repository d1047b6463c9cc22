"""L2 hit of a 100 B result against every peer on one redis-server, in the
same run: bare redis-py GET (hiredis parser), `redis-benchmark -c 1 GET`
(p50 and average), cashews' decorated async function on its Redis backend,
PyPI's cachekit 0.24.1 with Redis (its own venv, through a subprocess, when
BENCH_REF_PYTHON names its interpreter; scripts/bench_report.py sets it),
and our @cache / @cache.secure with L1 out of the way.

The in-process clients are timed round by round, alternating (each round
runs every client for the same number of calls), so a burst of load on
this shared machine hits all of them alike; each figure is the median over
rounds of the seconds per call.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import REDIS_SERVER, RedisServer  # noqa: E402

from cachekit import cache  # noqa: E402
from cachekit.backends import RedisBackend  # noqa: E402
from l2_tools import REDIS_BENCHMARK, median, per_call, redis_benchmark_get  # noqa: E402

GROUP = "L2 hit vs peers, 100 B (per call)"
ROOT = pathlib.Path(__file__).resolve().parent.parent
VALUE = {"payload": "x" * 100}


@pytest.fixture(scope="module")
def server():
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    s = RedisServer().start()
    yield s
    s.cleanup()


def _clients(server, backend):
    """name -> a callable of one int (0 or 1) that performs one hit."""
    out = {}
    rp = redis.Redis(host="127.0.0.1", port=server.port)
    rp.set("peer:0", b"v" * 100)
    rp.set("peer:1", b"v" * 100)
    keys = ("peer:0", "peer:1")
    out["redis-py GET (bare)"] = lambda i: rp.get(keys[i])

    for secure in (False, True):
        kw = dict(backend=backend, l1_max_entries=1, namespace=f"peers-{secure}")
        deco = cache.secure(master_key="ab" * 32, **kw) if secure else cache(**kw)

        @deco
        def f(i):
            return VALUE

        f(0), f(1)
        out[f"cachekit @cache{'.secure' if secure else ''} L2 hit"] = f

    try:
        from cashews import Cache
    except ImportError:
        Cache = None
    if Cache is not None:
        cashews = Cache()
        cashews.setup(server.url, client_side=False)
        loop = asyncio.new_event_loop()

        @cashews(ttl="5m", key="cashews:{i}")
        async def h(i):
            return VALUE

        loop.run_until_complete(h(0))
        loop.run_until_complete(h(1))

        async def one(i):
            return await h(i)

        # One event loop turn per call, as a sync caller would pay it.
        out["cashews @cache (async, Redis backend)"] = lambda i: loop.run_until_complete(one(i))
    return out, rp


def _reference(server) -> tuple[dict[str, float], str]:
    py = os.environ.get("BENCH_REF_PYTHON")
    if not py or not os.path.exists(py):
        return {}, "cachekit 0.24.1 rows missing: BENCH_REF_PYTHON is not set (scripts/bench_report.py sets it)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REDIS_URL", "CACHEKIT_REDIS_URL")}
    r = subprocess.run([py, str(ROOT / "scripts" / "bench_ref_timer.py"), "l2", server.url], cwd="/",
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {}, f"cachekit 0.24.1 rows missing: its timer failed ({tail})"
    return json.loads(r.stdout.strip().splitlines()[-1]), ""


def test_l2_hit_against_peers(server, value_recorder, note_recorder):
    backend = RedisBackend(server.url)
    clients, rp = _clients(server, backend)
    smoke = value_recorder is None
    rounds, calls = (1, 10) if smoke else (9, 1000)
    times: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, fn in clients.items():
            times[name].append(per_call(fn, calls))
    for name in clients:
        if "cachekit" in name:
            assert clients[name](0) == VALUE
    assert clients["cachekit @cache.secure L2 hit"].cache_stats()["l2_hits"] >= rounds * calls
    rp.close()
    backend.close()
    if smoke:
        return
    for name, ts in times.items():
        value_recorder(GROUP, name, median(ts), baseline=name.startswith("redis-py"))
    if REDIS_BENCHMARK is None:
        note_recorder(GROUP, "redis-benchmark rows missing: redis-benchmark is not installed")
    else:
        runs = [redis_benchmark_get(server.port) for _ in range(3)]
        value_recorder(GROUP, "redis-benchmark -c 1 GET p50", median([p for _, p in runs]))
        value_recorder(GROUP, "redis-benchmark -c 1 GET average", median([a for a, _ in runs]))
    if "cashews @cache (async, Redis backend)" not in times:
        note_recorder(GROUP, "cashews rows missing: pip install cashews")
    ref, why = _reference(server)
    for name, seconds in ref.items():
        value_recorder(GROUP, name + " (subprocess, timeit)", seconds)
    if why:
        note_recorder(GROUP, why)
