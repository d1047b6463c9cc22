"""The same timeit loops run in two interpreters: ours (this repository on
PYTHONPATH) and PyPI's cachekit 0.24.1 in its own venv. Both libraries
import as ``cachekit`` and share the serializer names (StandardSerializer,
EncryptionWrapper), so the code below is the same for both sides; only the
decorator arguments that keep L1 out of an L2 measurement differ.

    python bench_ref_timer.py l1            # L1 hit of a one-argument function
    python bench_ref_timer.py sizes         # serializer round trips by value size
    python bench_ref_timer.py l2 REDIS_URL  # decorated L2 hits, 100 B (L1 out of the way)

Prints one JSON object: {row name: median seconds per call}; for sizes
{size label: {row name: seconds}}. Run from a directory where neither
package shadows the other (scripts/bench_report.py uses a temporary one).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import timeit
import warnings

warnings.simplefilter("ignore")

import cachekit  # noqa: E402

VERSION = getattr(cachekit, "__version__", "?")
OURS = not VERSION.startswith("0.24")
LABEL = "cachekit-native" if OURS else f"cachekit {VERSION}"
SIZES = {"100 B": 100, "1 KB": 1_000, "10 KB": 10_000, "100 KB": 100_000, "1 MB": 1_000_000,
         "10 MB": 10_000_000}
MASTER = bytes.fromhex("ab" * 32)


def median_per_call(stmt, per: int = 1, repeat: int = 9) -> float:
    t = timeit.Timer(stmt)
    number, _ = t.autorange()
    runs = sorted(t.repeat(repeat, number))
    return runs[len(runs) // 2] / number / per


def l1() -> dict[str, float]:
    from cachekit import cache

    rows: dict[str, float] = {}

    def hits(fn):
        assert fn(7) == 14 and fn(7) == 14  # warm: every timed call is a hit

        def loop():
            for _ in range(100):
                fn(7)
        return median_per_call(loop, per=100, repeat=15)

    if OURS:
        @functools.lru_cache(maxsize=None)
        def lru(n):
            return n * 2
        rows["functools.lru_cache"] = hits(lru)

        @cache
        def ours(n):
            return n * 2
        rows["cachekit-native @cache"] = hits(ours)
    else:
        @cache(backend=None)  # 0.24.1: L1 only, no Redis
        def ref(n):
            return n * 2
        rows[f"{LABEL} @cache(backend=None)"] = hits(ref)

        @cache(backend=None, ttl=300)
        def ref_ttl(n):
            return n * 2
        rows[f"{LABEL} @cache(backend=None, ttl=300)"] = hits(ref_ttl)
    return rows


def sizes() -> dict[str, dict[str, float]]:
    from cachekit.serializers import EncryptionWrapper, StandardSerializer

    std = StandardSerializer()
    enc = EncryptionWrapper(master_key=MASTER, tenant_id="bench")
    out: dict[str, dict[str, float]] = {}
    for label, n in SIZES.items():
        value = {"payload": os.urandom(n)}

        def std_rt():
            data, meta = std.serialize(value)
            return std.deserialize(data, meta)

        def enc_rt():
            data, meta = enc.serialize(value, cache_key="bench:key")
            return enc.deserialize(data, meta, cache_key="bench:key")

        assert std_rt() == value and enc_rt() == value
        repeat = 5 if n >= 1_000_000 else 9
        out[label] = {f"{LABEL} StandardSerializer": median_per_call(std_rt, repeat=repeat),
                      f"{LABEL} EncryptionWrapper": median_per_call(enc_rt, repeat=repeat)}
    return out


def l2(url: str) -> dict[str, float]:
    os.environ["REDIS_URL"] = url
    from cachekit import cache

    value = {"payload": "x" * 100}
    rows: dict[str, float] = {}
    for secure in (False, True):
        runs = [0]
        if OURS:
            from cachekit.backends import RedisBackend
            kw = dict(backend=RedisBackend(url), l1_max_entries=1, ttl=300)
        else:
            kw = dict(l1_enabled=False, ttl=300)
        kw["namespace"] = f"bench-timer-{LABEL}-{'secure' if secure else 'plain'}".replace(" ", "-")
        deco = cache.secure(master_key="ab" * 32, **kw) if secure else cache(**kw)

        @deco
        def f(i):
            runs[0] += 1
            return value

        f(0), f(1)

        def loop():
            for _ in range(50):
                f(0)
                f(1)
        rows[f"{LABEL} @cache{'.secure' if secure else ''} L2 hit"] = median_per_call(loop, per=100, repeat=9)
        if runs[0] != 2:  # every timed call must have been a hit
            raise SystemExit(f"{runs[0] - 2} timed calls ran the function: not L2 hits")
    return rows


def main() -> None:
    mode = sys.argv[1]
    if mode == "l1":
        result: object = l1()
    elif mode == "sizes":
        result = sizes()
    elif mode == "l2":
        result = l2(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
