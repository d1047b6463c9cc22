"""Tests of the msgpack codec in cachekit._core: pack, unpack, _pack_key."""

from __future__ import annotations

import collections
import datetime as dt
import enum
import math
import struct
import time
import tracemalloc
import uuid
import zoneinfo
from decimal import Decimal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit import _core
from cachekit._core import SerializationError, UnsupportedTypeError, pack, unpack

MAX_DEPTH = 64
UTC = dt.timezone.utc
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def same(a: object, b: object) -> bool:
    """Equal and of exactly the same types, recursively (1, True, 1.0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        # Stored values keep insertion order.
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items())
        )
    if isinstance(a, (set, frozenset)):
        rest = list(b)
        for x in a:
            for i, y in enumerate(rest):
                if same(x, y):
                    del rest[i]
                    break
            else:
                return False
        return not rest
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.fold == b.fold and same_tz(a.tzinfo, b.tzinfo, a)
    return a == b


def same_tz(a: dt.tzinfo | None, b: dt.tzinfo | None, value: object) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, zoneinfo.ZoneInfo):
        return type(b) is zoneinfo.ZoneInfo and a.key == b.key
    arg = value if isinstance(value, dt.datetime) else None
    return type(b) is dt.timezone and a.utcoffset(arg) == b.utcoffset(arg)


def roundtrip(value: object) -> object:
    out = unpack(pack(value))
    assert same(value, out), (value, out)
    return out


def assert_only_serialization_error(data: bytes) -> None:
    try:
        unpack(data)
    except SerializationError:
        pass


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------

SCALARS = [
    None,
    True,
    False,
    0,
    1,
    -1,
    127,
    128,
    -32,
    -33,
    255,
    256,
    65535,
    65536,
    2**31,
    -(2**31) - 1,
    2**32,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    -(2**64),
    -(2**64) - 1,
    10**100,
    -(10**100),
    -(2**71),
    2**71 - 1,
    0.0,
    -0.0,
    1.5,
    -1e300,
    5e-324,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "ascii",
    "héllo wörld",
    "日本語 🎉",
    "x" * 70000,
    b"",
    b"\x00\xff",
    b"y" * 70000,
    bytearray(),
    bytearray(b"\x00abc"),
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_roundtrip_scalars(value):
    roundtrip(value)


def test_int_smallest_forms():
    assert pack(0) == b"\x00"
    assert pack(-1) == b"\xff"
    assert pack(128) == b"\xcc\x80"
    assert pack(-33) == b"\xd0\xdf"
    assert pack(2**64 - 1) == b"\xcf" + b"\xff" * 8
    assert pack(-(2**63)) == b"\xd3\x80" + b"\x00" * 7


def test_bigint_payload_is_minimal_twos_complement():
    for n in [2**64, -(2**63) - 1, -(2**64), -(2**71), 2**71 - 1, 10**100, -(10**100)]:
        data = pack(n)
        ext = msgpack.unpackb(data)
        assert isinstance(ext, msgpack.ExtType) and ext.code == 1
        length = (n.bit_length() + 8) // 8 if n >= 0 else ((-n - 1).bit_length() + 8) // 8
        assert ext.data == n.to_bytes(length, "big", signed=True)


def test_types_are_distinguished():
    values = [1, True, 1.0, "1", b"1", bytearray(b"1"), [1], (1,), {1}, frozenset({1})]
    decoded = [unpack(pack(v)) for v in values]
    assert [type(v) for v in decoded] == [type(v) for v in values]
    assert len({pack(v) for v in values}) == len(values)


@pytest.mark.parametrize(
    "value",
    [
        [],
        (),
        {},
        set(),
        frozenset(),
        [[]],
        ((),),
        [1, "a", None, [2.5, (b"x", bytearray(b"y"))]],
        (1, [2, (3, {4: (5,)})]),
        {"a": 1, "b": [1, 2], "c": {"d": None}},
        {1: "int", 2.5: "float", None: "none", True: "bool", b"k": "bytes"},
        {(1, 2): "tuple", frozenset({1, 2}): "frozenset", (): "empty"},
        {1, 2, "x", (3, 4), frozenset({5})},
        frozenset({None, 1.5, "a", (1, (2,))}),
        [{1}, {frozenset()}, frozenset({frozenset({1})})],
    ],
    ids=repr,
)
def test_roundtrip_containers(value):
    roundtrip(value)


def test_dict_keeps_insertion_order():
    d = {3: 1, 1: 2, 2: 3}
    assert list(unpack(pack(d))) == [3, 1, 2]


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 3, 31, 12, 30, 45, 123456),
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(-dt.timedelta(hours=23, microseconds=1))),
        dt.datetime(2024, 7, 1, 12, tzinfo=PARIS),
        dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=0),
        dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1),
        dt.datetime(2024, 10, 27, 2, 30, fold=1),
        dt.date(2024, 2, 29),
        dt.date(1, 1, 1),
        dt.time(),
        dt.time(23, 59, 59, 999999),
        dt.time(12, 0, fold=1),
        dt.time(12, 0, tzinfo=UTC),
        dt.time(12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
        dt.time(12, 0, tzinfo=PARIS),
        dt.timedelta(),
        dt.timedelta(days=-1),
        dt.timedelta(days=-3, seconds=5, microseconds=7),
        dt.timedelta(days=999999999, seconds=86399, microseconds=999999),
        dt.timedelta(days=-999999999),
    ],
    ids=repr,
)
def test_roundtrip_datetime_family(value):
    roundtrip(value)


def test_datetime_tz_reconstruction():
    fixed = unpack(pack(dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))))
    assert type(fixed.tzinfo) is dt.timezone
    assert fixed.utcoffset() == dt.timedelta(hours=2)
    zero = unpack(pack(dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(0), "Z"))))
    assert zero.tzinfo is UTC
    paris = unpack(pack(dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1)))
    assert paris.tzinfo is PARIS  # ZoneInfo caches instances per key
    assert paris.fold == 1 and paris.utcoffset() == dt.timedelta(hours=1)


def test_zoneinfo_without_key_is_stored_as_offset(tmp_path):
    with open(f"/usr/share/zoneinfo/Europe/Paris", "rb") as f:
        zone = zoneinfo.ZoneInfo.from_file(f)
    value = dt.datetime(2024, 7, 1, tzinfo=zone)
    out = unpack(pack(value))
    assert out == value and type(out.tzinfo) is dt.timezone
    assert out.utcoffset() == dt.timedelta(hours=2)


class NoOffset(dt.tzinfo):
    def utcoffset(self, d):
        return None

    def dst(self, d):
        return None


class Offset(dt.tzinfo):
    def utcoffset(self, d):
        return dt.timedelta(hours=1)

    def dst(self, d):
        return None


def test_tzinfo_without_offset_is_refused():
    with pytest.raises(UnsupportedTypeError, match="NoOffset"):
        pack(dt.datetime(2024, 1, 1, tzinfo=NoOffset()))
    with pytest.raises(UnsupportedTypeError, match="NoOffset"):
        pack(dt.time(1, tzinfo=NoOffset()))


def test_custom_tzinfo_is_stored_as_offset():
    out = unpack(pack(dt.datetime(2024, 1, 1, tzinfo=Offset())))
    assert type(out.tzinfo) is dt.timezone and out.utcoffset() == dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "value",
    ["0", "-0", "-0.00", "1.10", "1E+5", "-1.5e-30", "NaN", "-NaN", "sNaN", "Infinity", "-Infinity",
     "123456789012345678901234567890.123456789", "1e999999"],
)
def test_roundtrip_decimal(value):
    d = Decimal(value)
    out = unpack(pack(d))
    assert type(out) is Decimal and str(out) == str(d)


def test_roundtrip_uuid():
    for u in [uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.NAMESPACE_DNS]:
        out = roundtrip(u)
        assert type(out) is uuid.UUID
    assert pack(uuid.NAMESPACE_DNS) == b"\xd8\x0b" + uuid.NAMESPACE_DNS.bytes


def test_unpack_accepts_buffers():
    data = pack({"a": [1, 2]})
    for buf in (data, bytearray(data), memoryview(data), memoryview(b"xx" + data)[2:]):
        assert unpack(buf) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        unpack("not bytes")


def test_docstrings_have_signatures():
    assert _core.pack.__text_signature__ == "($module, obj, /)"
    assert _core.unpack.__text_signature__ == "($module, data, /)"
    assert _core._pack_key.__text_signature__ == "($module, obj, /)"


# --------------------------------------------------------------------------
# Hypothesis round trip
# --------------------------------------------------------------------------

fixed_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)),
)
tzinfos = st.none() | st.just(UTC) | fixed_offsets | st.sampled_from(
    [PARIS, zoneinfo.ZoneInfo("America/New_York"), zoneinfo.ZoneInfo("Asia/Kolkata")]
)

hashable_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats()
    | st.text()
    | st.binary()
    | st.datetimes(timezones=tzinfos)
    | st.dates()
    | st.times(timezones=st.none() | st.just(UTC) | fixed_offsets)
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.uuids()
)
leaves = hashable_leaves | st.binary().map(bytearray) | st.decimals()

hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=4),
    max_leaves=8,
)


def containers(children):
    return (
        st.lists(children, max_size=5)
        | st.lists(children, max_size=5).map(tuple)
        | st.dictionaries(hashables, children, max_size=5)
        | st.sets(hashables, max_size=5)
        | st.frozensets(hashables, max_size=5)
    )


values = st.recursive(leaves, containers, max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(values)
def test_hypothesis_roundtrip(value):
    roundtrip(value)


@settings(max_examples=200, deadline=None)
@given(values)
def test_hypothesis_pack_key_is_deterministic(value):
    assert _core._pack_key(value) == _core._pack_key(value)


# --------------------------------------------------------------------------
# Unsupported types
# --------------------------------------------------------------------------


class Foo:
    pass


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    pass


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "value, name",
    [
        (object(), "'object'"),
        (Foo(), f"'{__name__}.Foo'"),
        (Foo, "'type'"),
        (1j, "'complex'"),
        ([1, {"a": (2, Foo())}], f"'{__name__}.Foo'"),
        ({Foo(): 1}, f"'{__name__}.Foo'"),
        ({Color.RED: Foo()}, f"'{__name__}.Foo'"),
    ],
    ids=repr,
)
def test_unsupported_types(value, name):
    with pytest.raises(UnsupportedTypeError) as info:
        pack(value)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, SerializationError)
    message = str(info.value)
    assert name in message
    assert "supported: None, bool, int" in message


def test_defaultdict_with_an_unnamed_factory_is_refused():
    with pytest.raises(UnsupportedTypeError, match="default_factory"):
        pack(collections.defaultdict(lambda: 0))


def test_lone_surrogate_str_is_refused():
    with pytest.raises(SerializationError, match="surrogate") as info:
        pack(["ok", "\ud800"])
    assert not isinstance(info.value, TypeError)


# --------------------------------------------------------------------------
# Depth and mutation
# --------------------------------------------------------------------------


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_pack_depth_limit():
    roundtrip(nested_list(MAX_DEPTH))
    with pytest.raises(SerializationError, match="deeper than 64"):
        pack(nested_list(MAX_DEPTH + 1))
    t: tuple = ()
    for _ in range(MAX_DEPTH):
        t = (t,)
    with pytest.raises(SerializationError):
        pack(t)
    # A datetime opens a level too: 64 lists around one are too deep.
    value: object = dt.datetime(2024, 1, 1)
    for _ in range(MAX_DEPTH):
        value = [value]
    with pytest.raises(SerializationError):
        pack(value)
    with pytest.raises(SerializationError):
        pack_key(value)


def test_self_referencing_containers():
    a: list = []
    a.append(a)
    with pytest.raises(SerializationError):
        pack(a)
    d: dict = {}
    d["self"] = d
    with pytest.raises(SerializationError):
        pack(d)
    with pytest.raises(SerializationError):
        _core._pack_key(d)


def test_depth_failure_is_serialization_error_not_value_error():
    a: list = []
    a.append(a)
    with pytest.raises(SerializationError) as info:
        pack(a)
    assert not isinstance(info.value, ValueError)
    assert str(info.value) == "value nested deeper than 64 levels or containing itself"
    with pytest.raises(SerializationError, match="containing itself"):
        pack_key(nested_list(MAX_DEPTH + 1))


def test_unpack_depth_limit():
    assert unpack(b"\x91" * (MAX_DEPTH - 1) + b"\x90") == nested_list(MAX_DEPTH)
    with pytest.raises(SerializationError, match="nesting deeper than 64"):
        unpack(b"\x91" * MAX_DEPTH + b"\x90")
    with pytest.raises(SerializationError, match="nesting deeper than 64"):
        unpack(b"\x81\xc0" * MAX_DEPTH + b"\x80")
    # Every pack output at the limit decodes.
    unpack(pack(nested_list(MAX_DEPTH)))


# Hash flooding: ints that are multiples of 2**61 - 1 all hash to 0.
MERSENNE61 = 2**61 - 1
MAX_SAME_HASH = 32


def _colliding_map(n: int) -> bytes:
    """A map of n int keys that all hash to 0 (built by hand: building the
    dict in Python would itself be quadratic)."""
    body = b"".join(pack(k * MERSENNE61) + b"\x00" for k in range(1, n + 1))
    return b"\xdf" + struct.pack(">I", n) + body


def _colliding_set(n: int) -> bytes:
    body = b"\xdd" + struct.pack(">I", n) + b"".join(pack(k * MERSENNE61) for k in range(1, n + 1))
    return b"\xc9" + struct.pack(">I", len(body)) + bytes([3]) + body


def test_unpack_refuses_hash_flooding_quickly():
    flood = _colliding_map(10_400)
    flood_set = _colliding_set(10_400)
    assert 140_000 < len(flood) < 150_000
    start = time.perf_counter()
    with pytest.raises(SerializationError, match="share one hash"):
        unpack(flood)
    with pytest.raises(SerializationError, match="share one hash"):
        unpack(flood_set)
    # Quadratic insertion took ~0.5-3 s here; refusal stops after 33 keys.
    assert time.perf_counter() - start < 0.25


def test_unpack_hash_guard_threshold():
    # Exactly MAX_SAME_HASH keys sharing a hash, in a guarded (large) map,
    # still decode; one more is refused.
    honest = {k: 0 for k in range(1, 101)}  # not 0: hash(0) == 0 too
    shared = {k * MERSENNE61: 0 for k in range(1, MAX_SAME_HASH + 1)}
    assert unpack(pack({**honest, **shared})) == {**honest, **shared}
    shared[(MAX_SAME_HASH + 1) * MERSENNE61] = 0
    with pytest.raises(SerializationError, match="more than 32 keys share one hash"):
        unpack(pack({**honest, **shared}))
    with pytest.raises(SerializationError, match="set at offset"):
        unpack(pack(set(honest) | set(shared)))


def test_unpack_honest_large_containers_still_decode():
    d = {i: i for i in range(20_000)}
    assert unpack(pack(d)) == d
    # -1 and -2 share a hash in CPython; a few such pairs are fine.
    neg = {-i: i for i in range(20_000)}
    assert unpack(pack(neg)) == neg
    s = {f"key-{i}" for i in range(20_000)}
    assert unpack(pack(s)) == s
    fs = frozenset((i, -i) for i in range(20_000))
    assert unpack(pack(fs)) == fs


def test_unpack_depth_counts_ext_payloads():
    t: tuple = ()
    for _ in range(MAX_DEPTH - 1):
        t = (t,)
    assert unpack(pack(t)) == t
    with pytest.raises(SerializationError):
        pack([t])
    # Forge 65 levels of tuples by hand.
    inner = b"\x90"
    for _ in range(MAX_DEPTH):
        inner = b"\xc9" + struct.pack(">I", len(inner) + 1) + b"\x02\x91" + inner
    with pytest.raises(SerializationError, match="nesting deeper"):
        unpack(inner)


class Mutating(dt.tzinfo):
    """A tzinfo whose utcoffset() mutates a container being packed."""

    def __init__(self, action):
        self.action = action

    def utcoffset(self, d):
        self.action()
        return dt.timedelta(0)

    def dst(self, d):
        return None


def test_list_mutated_while_packing():
    items: list = []
    items += [dt.datetime(2024, 1, 1, tzinfo=Mutating(items.clear)), 1, 2]
    with pytest.raises(RuntimeError, match="changed size"):
        pack(items)


def test_dict_mutated_while_packing():
    d: dict = {}
    d["a"] = dt.datetime(2024, 1, 1, tzinfo=Mutating(lambda: d.update(b=1, c=2)))
    with pytest.raises(RuntimeError, match="changed size"):
        pack(d)
    d2: dict = {}
    d2["a"] = dt.datetime(2024, 1, 1, tzinfo=Mutating(lambda: d2.update(b=1)))
    with pytest.raises(RuntimeError, match="changed size"):
        _core._pack_key(d2)


# --------------------------------------------------------------------------
# Key mode
# --------------------------------------------------------------------------

pack_key = _core._pack_key


def test_key_dict_order_independent():
    assert pack_key({1: 2, 3: 4}) == pack_key({3: 4, 1: 2})
    assert pack_key({"b": [1, {"y": 1, "x": 2}], "a": None}) == pack_key(
        {"a": None, "b": [1, {"x": 2, "y": 1}]}
    )
    # Stored values keep insertion order instead.
    assert pack({1: 2, 3: 4}) != pack({3: 4, 1: 2})


def test_key_set_order_independent():
    a = set()
    b = set()
    items = [f"item{i}" for i in range(50)] + list(range(50))
    for x in items:
        a.add(x)
    for x in reversed(items):
        b.add(x)
    assert pack_key(a) == pack_key(b)
    assert pack_key(frozenset(items)) == pack_key(frozenset(reversed(items)))
    assert pack_key(a) != pack_key(frozenset(items))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(hashables, leaves, max_size=8), st.randoms())
def test_key_canonical_hypothesis(d, rnd):
    items = list(d.items())
    rnd.shuffle(items)
    assert pack_key(d) == pack_key(dict(items))
    keys = list(d)
    rnd.shuffle(keys)
    assert pack_key(set(d)) == pack_key(set(keys))


def test_key_types_distinguished():
    keys = [pack_key(v) for v in (1, True, 1.0, "1", b"1", Decimal(1), (1,), [1])]
    assert len(set(keys)) == len(keys)


def test_key_classes():
    assert pack_key(int) != pack_key(str)
    assert b"builtins:int" in pack_key(int)
    assert f"{__name__}:Foo".encode() in pack_key(Foo)
    assert pack_key({"cls": Foo}) == pack_key({"cls": Foo})
    with pytest.raises(SerializationError, match="only used in cache keys"):
        unpack(pack_key(int))


class Custom:
    def __init__(self, a, b):
        self.a, self.b = a, b

    def __cachekit_key__(self):
        return (self.a, {"b": self.b})


class OtherCustom(Custom):
    pass


def test_key_custom_objects():
    assert pack_key(Custom(1, 2)) == pack_key(Custom(1, 2))
    assert pack_key(Custom(1, 2)) != pack_key(Custom(1, 3))
    assert pack_key(Custom(1, 2)) != pack_key(OtherCustom(1, 2))
    assert pack_key(Custom(1, 2)) != pack_key((1, {"b": 2}))
    assert f"{__name__}:Custom".encode() in pack_key(Custom(1, 2))
    assert pack_key([Custom(1, {3, 4})]) == pack_key([Custom(1, {4, 3})])
    with pytest.raises(UnsupportedTypeError):
        pack(Custom(1, 2))
    with pytest.raises(SerializationError, match="only used in cache keys"):
        unpack(pack_key(Custom(1, 2)))


def test_key_custom_errors_propagate():
    class Broken:
        def __cachekit_key__(self):
            raise KeyError("boom")

    class Recursive:
        def __cachekit_key__(self):
            return self

    with pytest.raises(KeyError):
        pack_key(Broken())
    with pytest.raises(SerializationError):
        pack_key(Recursive())


def test_key_refuses_plain_objects():
    with pytest.raises(UnsupportedTypeError, match="Foo"):
        pack_key(Foo())
    with pytest.raises(UnsupportedTypeError, match="__cachekit_key__"):
        pack_key([object()])


def test_key_lone_surrogates():
    assert pack_key("\ud800") != pack_key("\ud801")
    assert pack_key("\ud800") == pack_key("\ud800")


# --------------------------------------------------------------------------
# Malformed input
# --------------------------------------------------------------------------

SAMPLES = [
    pack({"k": [1, -2, 2**40, 1.5, "str", b"bin", None, True]}),
    pack((1, {2, 3}, frozenset({"a"}), bytearray(b"ba"), 10**30, -(10**30))),
    pack([dt.datetime(2024, 10, 27, 2, 30, tzinfo=PARIS, fold=1), dt.date(2020, 1, 2)]),
    pack([dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=3))), dt.timedelta(days=-2, seconds=3)]),
    pack({Decimal("-1.25E+3"): uuid.UUID(int=12345), (1, 2): "t"}),
    pack("x" * 300),
    pack(list(range(300))),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=range(len(SAMPLES)))
def test_every_truncation_raises(sample):
    unpack(sample)
    for cut in range(len(sample)):
        with pytest.raises(SerializationError):
            unpack(sample[:cut])


@pytest.mark.parametrize("sample", SAMPLES, ids=range(len(SAMPLES)))
def test_bit_flips(sample):
    for i in range(len(sample)):
        for bit in range(8):
            data = bytearray(sample)
            data[i] ^= 1 << bit
            assert_only_serialization_error(bytes(data))


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes(data):
    assert_only_serialization_error(data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(SAMPLES))
def test_random_splices(data, sample):
    assert_only_serialization_error(sample[: len(sample) // 2] + data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xdd\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xc6\xff\xff\xff\xff",
        b"\xc9\xff\xff\xff\xff\x02",
        b"\xdd\x7f\xff\xff\xff" + b"\xc0" * 100,
        b"\xde\x00\x40" + b"\xc0" * 100,  # map of 64 needs 128 bytes
        b"\xc9\x00\x00\x00\x05\x02\xdd\xff\xff\xff\xff",  # forged count inside a tuple
        b"\x91" * 100000,
    ],
    ids=repr,
)
def test_forged_lengths_fail_fast(data):
    start = time.perf_counter()
    with pytest.raises(SerializationError, match="exceeds remaining input|truncated|nesting"):
        unpack(data)
    assert time.perf_counter() - start < 0.5


def test_nested_claims_cannot_amplify_allocation():
    # Each of 60 nested arrays claims as many elements as the input has
    # bytes; only the first claim may be accepted.
    n = 200_000
    data = (b"\xdd" + struct.pack(">I", n)) * 60 + b"\xc0" * n
    tracemalloc.start()
    try:
        with pytest.raises(SerializationError, match="exceeds remaining input"):
            unpack(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * len(data)


def test_error_messages():
    with pytest.raises(SerializationError, match="truncated msgpack data at offset 0"):
        unpack(b"")
    with pytest.raises(SerializationError, match="truncated msgpack data at offset 3"):
        unpack(b"\x92\x01\xcd\x01")
    with pytest.raises(SerializationError, match="array count 4294967295 exceeds remaining input"):
        unpack(b"\xdd\xff\xff\xff\xff")
    with pytest.raises(SerializationError, match="trailing bytes"):
        unpack(pack(1) + b"\x00")
    with pytest.raises(SerializationError, match="trailing bytes"):
        unpack(b"\xc0\xc0")
    with pytest.raises(SerializationError, match="unknown extension type 77"):
        unpack(b"\xd4\x4d\x00")
    with pytest.raises(SerializationError, match="unknown extension type -1"):
        unpack(msgpack.packb(dt.datetime(2024, 1, 1, tzinfo=UTC), datetime=True))
    with pytest.raises(SerializationError, match="invalid UTF-8 in str"):
        unpack(b"\xa2\xc3\x28")
    with pytest.raises(SerializationError, match="invalid UTF-8 in str"):
        unpack(b"\xa3\xed\xa0\x80")  # encoded surrogate
    with pytest.raises(SerializationError, match="unhashable key in map"):
        unpack(b"\x81\x90\xc0")
    with pytest.raises(SerializationError, match="unhashable"):
        unpack(pack({1}).replace(b"\x91\x01", b"\x91\x90"))
    with pytest.raises(SerializationError, match="duplicate key"):
        unpack(b"\x82\x01\xc0\x01\xc0")
    with pytest.raises(SerializationError, match="invalid msgpack type byte 0xc1"):
        unpack(b"\xc1")


def ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


@pytest.mark.parametrize(
    "data",
    [
        ext(1, b""),  # empty bigint
        ext(11, b"\x00" * 15),  # short UUID
        ext(11, b"\x00" * 17),
        ext(10, b"not a number"),
        ext(10, "1.5\u00e9".encode()),
        ext(2, msgpack.packb({})),  # tuple payload not an array
        ext(2, msgpack.packb([1]) + b"\x00"),  # trailing bytes in payload
        ext(6, msgpack.packb([2024, 1, 1, 0, 0, 0, 0, 0])),  # 8 fields, not 9
        ext(6, msgpack.packb([2024, 13, 1, 0, 0, 0, 0, 0, None])),  # month 13
        ext(6, msgpack.packb([2024, 1, 1, 0, 0, 0, 0, 2, None])),  # fold 2
        ext(6, msgpack.packb([2024, 1, 1, 0, 0, 0, 0, 0, 1.5])),  # tz float
        ext(6, msgpack.packb([2024, 1, 1, 0, 0, 0, 0, 0, "No/Such_Zone"])),
        ext(6, msgpack.packb([2024, 1, 1, 0, 0, 0, 0, 0, "../../etc/passwd"])),
        ext(6, msgpack.packb([2024, 1, 1, 0, 0, 0, 0, 0, 86400 * 10**6])),  # offset = 1 day
        ext(6, msgpack.packb([2**40, 1, 1, 0, 0, 0, 0, 0, None])),
        ext(6, msgpack.packb([True, 1, 1, 0, 0, 0, 0, 0, None])),
        ext(7, msgpack.packb([2023, 2, 29])),
        ext(8, msgpack.packb([24, 0, 0, 0, 0, None])),
        ext(9, msgpack.packb([0, 86400, 0])),  # not normalised
        ext(9, msgpack.packb([10**9, 0, 0])),
        ext(3, msgpack.packb([1, 1])),  # duplicate set element
        ext(64, b"builtins:int"),
        ext(65, msgpack.packb(["a:b", 1])),
        ext(77, b""),
    ],
    ids=repr,
)
def test_invalid_extension_payloads(data):
    with pytest.raises(SerializationError):
        unpack(data)


def test_forged_huge_bigint_and_decimal_are_bounded():
    # Payload length is checked against the input before anything is built.
    with pytest.raises(SerializationError, match="exceeds remaining input"):
        unpack(b"\xc9\x7f\xff\xff\xff\x01\x00")
    with pytest.raises(SerializationError, match="exceeds remaining input"):
        unpack(b"\xc9\x7f\xff\xff\xff\x0a1")


# --------------------------------------------------------------------------
# msgpack interop
# --------------------------------------------------------------------------

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.text() | st.integers(min_value=-(2**63), max_value=2**64 - 1), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(plain)
def test_msgpack_interop(value):
    assert same(msgpack.unpackb(pack(value), raw=False, strict_map_key=False), value)
    assert same(unpack(msgpack.packb(value)), value)


def test_msgpack_interop_forms():
    # Forms msgpack-python emits that our packer does not.
    assert unpack(b"\xca" + struct.pack(">f", 1.5)) == 1.5
    assert type(unpack(b"\xca" + struct.pack(">f", 1.5))) is float
    assert unpack(msgpack.packb("x" * 40)) == "x" * 40  # str8
    assert unpack(b"\xd9\x01a") == "a"
    assert unpack(b"\xda\x00\x01a") == "a"
    assert unpack(b"\xdb\x00\x00\x00\x01a") == "a"
    assert unpack(b"\xc4\x01a\x00"[:3]) == b"a"
    assert unpack(b"\xc5\x00\x01a") == b"a"
    assert unpack(b"\xc6\x00\x00\x00\x01a") == b"a"
    assert unpack(b"\xdc\x00\x01\x01") == [1]
    assert unpack(b"\xdd\x00\x00\x00\x01\x01") == [1]
    assert unpack(b"\xde\x00\x01\x01\x02") == {1: 2}
    assert unpack(b"\xdf\x00\x00\x00\x01\x01\x02") == {1: 2}
    assert unpack(b"\xd0\x05") == 5  # int8 holding a positive value
    assert unpack(b"\xd1\xff\x00") == -256
    assert unpack(b"\xd2\x80\x00\x00\x00") == -(2**31)
    assert unpack(b"\xd3" + b"\xff" * 8) == -1
    assert unpack(b"\xcd\x01\x00") == 256
    assert unpack(b"\xce\xff\xff\xff\xff") == 2**32 - 1
    # Our ext types use ext32 with a back-patched length, which msgpack reads.
    ext_value = msgpack.unpackb(pack((1, 2)))
    assert ext_value == msgpack.ExtType(2, msgpack.packb([1, 2]))
