"""@cache(serializer="orjson" | "arrow"): JSON and Arrow entries through the
C call path, in L1, in Redis and under @cache.secure; the serializer id in
each entry turns a reader with another serializer into a counted miss."""

from __future__ import annotations

import pytest

from cachekit import ConfigurationError, cache
from cachekit._core import RedisClient, read_header
from cachekit.backends import RedisBackend
from cachekit.serializers import ArrowSerializer, EncryptionWrapper, OrjsonSerializer

pytest.importorskip("orjson")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

KEY = "7c" * 32


@pytest.fixture
def backend(redis_server):
    redis_server.flushall()
    b = RedisBackend(redis_server.url)
    yield b
    b.close()


@pytest.fixture
def raw(redis_server):
    c = RedisClient(redis_server.url)
    yield c
    c.close()


def make(serializer, backend=None, secure=False, runs=None, value=None, **kw):
    """One function, the same identity (so the same Redis names) whatever
    the serializer: readers and writers of one entry."""
    runs = [] if runs is None else runs
    opts = dict(serializer=serializer, backend=backend, **kw)
    deco = cache.secure(master_key=KEY, **opts) if secure else cache(**opts)

    def shared(x):
        runs.append(x)
        return value(x) if value is not None else {"x": x, "pair": (x, x + 1), "s": "t"}

    return deco(shared)


def frame(x=0):
    return pd.DataFrame(
        {"a": [1, 2, 3 + x], "f": [0.5, None, 2.5], "s": ["p", "q", "r"],
         "cat": pd.Categorical(["u", "v", "u"]),
         "ts": pd.date_range("2026-01-01", periods=3, tz="UTC")},
        index=pd.Index(["i", "j", "k"], name="key"),
    )


# ---------------------------------------------------------------- orjson


@pytest.mark.parametrize("serializer", ["orjson", OrjsonSerializer()], ids=["name", "instance"])
def test_orjson_l1_hits_are_the_json_value_and_private(serializer):
    runs = []
    f = make(serializer, runs=runs)
    assert f(1) == {"x": 1, "pair": (1, 2), "s": "t"}  # the miss returns the result itself
    hit = f(1)
    assert hit == {"x": 1, "pair": [1, 2], "s": "t"}  # what JSON keeps
    hit["x"] = 99
    hit["pair"].append(0)
    assert f(1) == {"x": 1, "pair": [1, 2], "s": "t"}  # a fresh copy each hit
    assert runs == [1]
    assert f.cache_info().l1_hits == 2


def test_orjson_unencodable_result_is_returned_uncached_and_logged_once(cachekit_log):
    runs = []
    marker = object()
    f = make("orjson", runs=runs, value=lambda x: {"o": marker})
    assert f(1) == {"o": marker} and f(1) == {"o": marker}
    assert runs == [1, 1]
    assert f.cache_stats()["store_errors"] == 2
    assert cachekit_log.text.count("cannot encode this result") == 1
    big = make("orjson", value=lambda x: 2**70)  # past JSON's 64-bit ints
    assert big(1) == 2**70 and big.cache_stats()["store_errors"] == 1


def test_orjson_through_redis(backend, raw):
    runs = []
    f = make("orjson", backend=backend, runs=runs, ttl=60)
    f(1)
    name = f.cache_key(1).encode()
    assert read_header(raw.get(name))["serializer"] == 2
    f.store.clear()
    assert f(1) == {"x": 1, "pair": [1, 2], "s": "t"}
    assert f.cache_stats()["l2_hits"] == 1 and runs == [1]
    f(1)["pair"].append(5)  # the L1 copy L2 filled is private too
    assert f(1) == {"x": 1, "pair": [1, 2], "s": "t"} and runs == [1]


@pytest.mark.parametrize("writer,reader", [
    ("orjson", "default"), ("default", "orjson"), ("orjson", "arrow"), ("arrow", "orjson"),
    ("arrow", "default"), ("default", "arrow"),
])
def test_reader_with_another_serializer_gets_a_counted_miss(backend, writer, reader):
    runs = []
    w = make(writer, backend=backend, runs=runs, value=frame if writer == "arrow" else None)
    r = make(reader, backend=backend, runs=runs, value=frame if reader == "arrow" else None)
    w(1)
    r.store.clear()
    got = r(1)
    assert runs == [1, 1]  # the reader recomputed
    assert r.cache_stats()["integrity_errors"] == 1
    if reader == "arrow":
        pd.testing.assert_frame_equal(got, frame(1))
    else:
        assert got == {"x": 1, "pair": (1, 2), "s": "t"}
    # and the entry it wrote back is its own: its next L2 read is a hit
    r.store.clear()
    r(1)
    assert runs == [1, 1] and r.cache_stats()["l2_hits"] == 1


def test_corrupt_json_entry_is_a_counted_miss(backend, raw):
    from cachekit._core import frame as ck_frame

    runs = []
    f = make("orjson", backend=backend, runs=runs)
    f(1)
    name = f.cache_key(1).encode()
    for bad in (ck_frame(b"{not json", serializer=2), ck_frame(b"\xff\xfe", serializer=2),
                ck_frame(b"[1,2", serializer=2)):
        raw.set(name, bad)
        f.store.clear()
        assert f(1) == {"x": 1, "pair": (1, 2), "s": "t"}
    assert len(runs) == 4 and f.cache_stats()["integrity_errors"] == 3


# ----------------------------------------------------------------- Arrow


@pytest.mark.parametrize("serializer", ["arrow", ArrowSerializer(), ArrowSerializer(compression="zstd")],
                         ids=["name", "instance", "zstd"])
def test_arrow_frames_round_trip_through_redis(backend, serializer):
    runs = []
    f = make(serializer, backend=backend, runs=runs, value=frame)
    pd.testing.assert_frame_equal(f(1), frame(1))
    f.store.clear()
    got = f(1)  # from Redis
    pd.testing.assert_frame_equal(got, frame(1))
    assert f.cache_stats()["l2_hits"] == 1 and runs == [1]
    got.iloc[0, 0] = -1  # hits are private copies
    pd.testing.assert_frame_equal(f(1), frame(1))
    assert runs == [1]


def test_arrow_return_formats():
    pl = pytest.importorskip("polars")
    runs = []
    as_polars = make(ArrowSerializer(return_format="polars"), runs=runs, value=frame)
    as_polars(1)
    hit = as_polars(1)
    assert isinstance(hit, pl.DataFrame) and hit["a"].to_list() == [1, 2, 4]
    as_table = make(ArrowSerializer(return_format="arrow"), runs=runs, value=frame)
    as_table(1)
    t1, t2 = as_table(1), as_table(1)
    assert isinstance(t1, pa.Table) and t1 is t2  # immutable: shared
    from_polars = make("arrow", runs=runs, value=lambda x: pl.DataFrame({"v": [x, x]}))
    from_polars(2)
    assert isinstance(from_polars(2), pd.DataFrame) and from_polars(2)["v"].tolist() == [2, 2]
    assert runs == [1, 1, 2]


def test_arrow_refuses_what_is_not_a_table(cachekit_log):
    runs = []
    f = make("arrow", runs=runs, value=lambda x: {"not": "a frame"})
    assert f(1) == {"not": "a frame"} and f(1) == {"not": "a frame"}
    assert runs == [1, 1] and f.cache_stats()["store_errors"] == 2
    assert cachekit_log.text.count("ArrowSerializer stores pandas or polars") == 1


# --------------------------------------------------------------- secure


@pytest.mark.parametrize("serializer", ["orjson", "arrow"])
def test_secure_serializers_seal_their_entries(backend, raw, serializer):
    runs = []
    value = frame if serializer == "arrow" else None
    f = make(serializer, backend=backend, secure=True, runs=runs, value=value)
    f(1)
    f.store.clear()
    got = f(1)  # from Redis, decrypted
    assert runs == [1] and f.cache_stats()["l2_hits"] == 1
    if value is not None:
        pd.testing.assert_frame_equal(got, frame(1))
    else:
        assert got == {"x": 1, "pair": [1, 2], "s": "t"}
    assert f(1) is not f(1)  # L1 holds ciphertext: every hit decrypts its own copy


def test_secure_entries_are_ciphertext_with_the_serializer_id(backend, redis_server):
    f = make("orjson", backend=backend, secure=True, value=lambda x: {"secret": "hunter2"})
    f(1)
    names = redis_server.command(b"KEYS", b"*").split(b"\r\n")
    name = next(n for n in names if b"shared" in n)
    entry = RedisClient(redis_server.url).get(name)
    header = read_header(entry)
    assert header["encrypted"] and header["serializer"] == 2
    assert b"hunter2" not in entry


def test_secure_reader_with_another_serializer_gets_a_miss(backend):
    runs = []
    w = make("orjson", backend=backend, secure=True, runs=runs)
    r = make("default", backend=backend, secure=True, runs=runs)
    w(1)
    assert r(1) == {"x": 1, "pair": (1, 2), "s": "t"}
    assert runs == [1, 1]
    assert r.cache_stats()["decrypt_errors"] + r.cache_stats()["integrity_errors"] == 1


def test_encryption_wrapper_over_orjson_and_arrow(backend):
    for inner, value in ((OrjsonSerializer(), None), (ArrowSerializer(), frame)):
        runs = []
        wrapper = EncryptionWrapper(inner, master_key=KEY, tenant_id="acme")
        f = make(wrapper, backend=backend, runs=runs, value=value)
        f(2)
        f.store.clear()
        got = f(2)
        assert runs == [2] and f.cache_stats()["l2_hits"] == 1
        if value is not None:
            pd.testing.assert_frame_equal(got, frame(2))
        else:
            assert got == {"x": 2, "pair": [2, 3], "s": "t"}
        assert f.keyring is wrapper.keyring


def test_secure_l1_only_with_orjson():
    runs = []
    f = make("orjson", secure=True, runs=runs, backend=None)
    f(3)
    assert f(3) == {"x": 3, "pair": [3, 4], "s": "t"} and runs == [3]


def test_async_function_with_orjson(backend):
    import asyncio

    runs = []

    @cache(serializer="orjson", backend=backend)
    async def g(x):
        runs.append(x)
        return {"v": (x,)}

    async def main():
        a = await g(1)
        g.store.clear()
        b = await g(1)
        return a, b

    a, b = asyncio.run(main())
    assert a == {"v": (1,)} and b == {"v": [1]} and runs == [1]


def test_missing_extra_is_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson fails
    with pytest.raises(ConfigurationError, match=r"\[json\]"):
        cache(serializer="orjson")(lambda: 1)
    with pytest.raises(ConfigurationError, match=r"\[json\]"):
        cache.secure(master_key=KEY, serializer="orjson")(lambda: 1)
