"""ck_py_copy through _core.copy_value: a deep copy where mutable containers
are new, immutable leaves are shared, and types and errors match pack()."""

from __future__ import annotations

import collections
import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit import _core
from cachekit._core import SerializationError, UnsupportedTypeError

copy_value = _core.copy_value
MAX_DEPTH = 64

LEAVES = [
    0, 1, -5, 10**40, 1.5, float("nan"), "", "text", "é\U0001f600", b"", b"bytes", None, True,
    False, Decimal("1.10"), uuid.UUID(int=12345), dt.datetime(2024, 5, 6, 7, 8, 9, 10),
    dt.datetime(2024, 1, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")), dt.date(2024, 1, 2),
    dt.time(3, 4, tzinfo=dt.timezone.utc), dt.timedelta(days=-1, seconds=5),
]


def mutable_ids(value, out=None):
    """ids of every mutable container in the graph."""
    out = set() if out is None else out
    if isinstance(value, (list, dict, set, bytearray)):
        out.add(id(value))
    if isinstance(value, dict):
        for k, v in value.items():
            mutable_ids(k, out)
            mutable_ids(v, out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for x in value:
            mutable_ids(x, out)
    return out


@pytest.mark.parametrize("leaf", LEAVES, ids=repr)
def test_immutable_leaves_are_shared(leaf):
    assert copy_value(leaf) is leaf
    assert copy_value([leaf])[0] is leaf


def test_immutable_tuples_and_frozensets_are_shared():
    t = (1, "a", (2.5, b"x"), frozenset({(1, 2), "s"}), Decimal(1))
    assert copy_value(t) is t
    fs = frozenset({1, (2, 3), frozenset({4})})
    assert copy_value(fs) is fs
    assert copy_value(()) == ()


def test_containers_are_new_and_equal_with_exact_types():
    value = {
        "list": [1, [2, [3, {"deep": bytearray(b"ba")}]]],
        "tuple": (1, [2], {"k": {3}}),
        "set": {1, "a", (2, 3)},
        "frozen": frozenset({1, 2}),
        "ba": bytearray(b"xyz"),
        (1, "key"): {"nested": [dt.date(2024, 1, 1)]},
    }
    copy = copy_value(value)
    assert copy == value
    assert copy is not value
    assert mutable_ids(copy).isdisjoint(mutable_ids(value))
    assert type(copy["tuple"]) is tuple and copy["tuple"] is not value["tuple"]
    assert copy["tuple"][0] is value["tuple"][0]
    assert copy["frozen"] is value["frozen"]
    assert type(copy["ba"]) is bytearray
    assert list(copy) == list(value)  # insertion order kept


def test_mutating_the_copy_never_changes_the_original():
    original = {"a": [1, {"b": [2, 3], "s": {4}}], "t": ([5], bytearray(b"6"))}
    snapshot = _core.unpack(_core.pack(original))
    copy = copy_value(original)
    copy["a"].append(9)
    copy["a"][1]["b"].append(9)
    copy["a"][1]["s"].add(9)
    copy["a"][1]["new"] = 1
    copy["t"][0].append(9)
    copy["t"][1].extend(b"9")
    copy["z"] = 0
    assert original == snapshot


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary()),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=4),
        st.binary(max_size=4).map(bytearray),
        st.frozensets(st.integers(), max_size=4),
        st.sets(st.text(max_size=3), max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_copy_matches_a_round_trip(value):
    copy = copy_value(value)
    assert _core.pack(copy) == _core.pack(value)
    assert mutable_ids(copy).isdisjoint(mutable_ids(value))


def test_aliasing_is_not_preserved():
    inner = [1]
    copy = copy_value([inner, inner])
    assert copy == [[1], [1]]
    assert copy[0] is not copy[1]


class Foo:
    pass


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize(
    "value",
    [object(), Foo(), [1, Foo()], {"k": (Foo(),)}, {Point(1, Foo())},
     collections.OrderedDict(a=Foo()), Point(Foo(), 2), 1j, Foo, {Foo(): 1},
     collections.defaultdict(lambda: 0)],
    ids=repr,
)
def test_unsupported_types_raise_like_pack(value):
    with pytest.raises(UnsupportedTypeError) as copy_info:
        copy_value(value)
    with pytest.raises(UnsupportedTypeError) as pack_info:
        _core.pack(value)
    assert str(copy_info.value) == str(pack_info.value)


def test_depth_limit_like_pack():
    value: list = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert copy_value(value) == value
    with pytest.raises(SerializationError, match="deeper than 64"):
        copy_value([value])
    # A datetime opens a level in the packer, and here too.
    deep: object = dt.datetime(2024, 1, 1)
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(SerializationError):
        _core.pack(deep)
    with pytest.raises(SerializationError):
        copy_value(deep)
    a: list = []
    a.append(a)
    with pytest.raises(SerializationError, match="containing itself"):
        copy_value(a)
