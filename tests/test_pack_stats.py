"""ck_py_pack_ex statistics through _core.pack_stats: graph size, mutability
and the output limit that stops the walk early."""

from __future__ import annotations

import datetime as dt
import sys
import time
import uuid
from decimal import Decimal

import pytest

from cachekit import _core
from cachekit._core import SerializationError, UnsupportedTypeError

pack_stats = _core.pack_stats


def test_encoding_is_the_same_as_pack():
    value = {"a": [1, 2.5, "x", b"y"], "t": (None, True), "s": {1, 2}}
    encoded, graph_bytes, _ = pack_stats(value)
    assert encoded == _core.pack(value)
    assert graph_bytes > 0


def test_graph_bytes_of_distinct_strings_is_close_to_getsizeof():
    strings = [f"{i:05d}".ljust(100, "x") for i in range(1000)]
    assert len(set(strings)) == 1000
    expected = sys.getsizeof(strings) + sum(sys.getsizeof(s) for s in strings)
    _, graph_bytes, _ = pack_stats(strings)
    assert expected / 2 <= graph_bytes <= expected * 2


@pytest.mark.parametrize(
    "value",
    [
        {i: str(i) * 10 for i in range(200)},
        set(range(300)),
        bytearray(5000),
        "é" * 1000,
        "\U0001f600" * 100,
        10**200,
        (b"x" * 300, 1.5),
    ],
    ids=lambda v: type(v).__name__,
)
def test_graph_bytes_within_2x_of_getsizeof(value):
    def deep_size(v):
        size = sys.getsizeof(v)
        if isinstance(v, dict):
            size += sum(deep_size(k) + deep_size(x) for k, x in v.items())
        elif isinstance(v, (list, tuple, set, frozenset)):
            size += sum(deep_size(x) for x in v)
        return size

    _, graph_bytes, _ = pack_stats(value)
    assert deep_size(value) / 2 <= graph_bytes <= deep_size(value) * 2


@pytest.mark.parametrize(
    "value",
    [
        1, 10**30, "s", b"b", 1.5, None, True, Decimal("1.5"), uuid.UUID(int=7),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.date(2024, 1, 1), dt.time(1),
        dt.timedelta(1), (1, ("a", frozenset({2, (3,)}))), frozenset({"x"}), (),
    ],
    ids=repr,
)
def test_immutable_graphs(value):
    assert pack_stats(value)[2] is False


@pytest.mark.parametrize(
    "value",
    [[], {}, set(), bytearray(), (1, [2]), ((({"a": 1},),),), frozenset({(1, 2)}) and (1, {3}),
     {"k": (bytearray(b"x"),)}],
    ids=repr,
)
def test_mutable_graphs(value):
    assert pack_stats(value)[2] is True


def test_limit_stops_early():
    big = ["x" * 100] * 10**6
    start = time.perf_counter()
    full, _, _ = pack_stats(big)
    full_time = time.perf_counter() - start
    assert len(full) > 100_000_000
    start = time.perf_counter()
    encoded, graph_bytes, has_mutable = pack_stats(big, limit=1000)
    limited_time = time.perf_counter() - start
    assert encoded is None
    assert has_mutable is True
    # The list itself (8 MB of item pointers) and what was visited before
    # the stop, not the million strings.
    assert graph_bytes < sys.getsizeof(big) + 10_000
    assert limited_time < full_time / 20


def test_limit_refuses_a_large_string_without_copying_it():
    for huge in ("y" * 50_000_000, bytearray(50_000_000)):
        start = time.perf_counter()
        assert len(pack_stats(huge)[0]) > 50_000_000
        full_time = time.perf_counter() - start
        start = time.perf_counter()
        assert pack_stats(huge, limit=1000)[0] is None
        assert time.perf_counter() - start < full_time / 20


def test_limit_boundary():
    value = b"x" * 10
    size = len(_core.pack(value))
    assert pack_stats(value, limit=size)[0] == _core.pack(value)
    assert pack_stats(value, limit=size - 1)[0] is None
    nested = {"a": [1, 2, 3], "b": "text"}
    size = len(_core.pack(nested))
    assert pack_stats(nested, limit=size)[0] == _core.pack(nested)
    assert pack_stats(nested, limit=size - 1)[0] is None
    assert pack_stats(nested, limit=0)[0] == _core.pack(nested)


def test_errors_are_raised_as_by_pack():
    with pytest.raises(UnsupportedTypeError):
        pack_stats([object()])
    a: list = []
    a.append(a)
    with pytest.raises(SerializationError, match="containing itself"):
        pack_stats(a, limit=10**9)
    with pytest.raises(ValueError):
        pack_stats(1, limit=-1)
