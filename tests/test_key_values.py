"""Enum members, named tuples and frozen dataclasses as cache-key arguments:
keyed by their type and value (key-only extension codes 66-68), so calls
with them are cached, and distinct values or types never share an entry."""

from __future__ import annotations

import collections
import dataclasses
import enum
import sys
import typing

import pytest

from cachekit import _core, cache
from cachekit._core import SerializationError, UnsupportedTypeError

pack_key = _core._pack_key


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = (3, "b")


class Shade(enum.IntEnum):
    RED = 1
    GREEN = 2


class Perm(enum.Flag):
    R = 4
    W = 2


class Tone(enum.Enum):
    LIGHT = Color.RED  # a member whose value is another member


PointNT = collections.namedtuple("PointNT", "x y")
OtherNT = collections.namedtuple("OtherNT", "x y")


class PointTN(typing.NamedTuple):
    x: int
    y: int = 0


@dataclasses.dataclass(frozen=True)
class Frozen:
    a: int
    b: str = "b"
    note: str = dataclasses.field(default="", compare=False)
    LIMIT: typing.ClassVar[int] = 10


@dataclasses.dataclass(frozen=True)
class FrozenTwin:
    a: int
    b: str = "b"


@dataclasses.dataclass
class Mutable:
    a: int


class Plain:
    pass


def counted():
    calls = []

    @cache(backend=None)
    def f(x):
        calls.append(x)
        return len(calls)

    return f, calls


ARGS = [
    Color.RED, Color.GREEN, Color.BLUE, Shade.RED, Shade.GREEN, Perm.R, Perm.R | Perm.W,
    Tone.LIGHT, PointNT(1, 2), PointNT(2, 1), OtherNT(1, 2), PointTN(1, 2), PointTN(1),
    Frozen(1), Frozen(1, "c"), Frozen(2), FrozenTwin(1), (1, 2), 1, (3, "b"),
    [Color.RED, PointNT(1, 2)], {"k": Frozen(1)},
]


def test_each_argument_runs_once_and_is_then_cached():
    f, calls = counted()
    for arg in ARGS:
        f(arg)
        f(arg)
    assert len(calls) == len(ARGS)
    assert f.cache_stats()["key_errors"] == 0
    assert f.cache_stats()["hits"] == len(ARGS)


def test_distinct_values_never_share_an_entry():
    keys = [pack_key(a) for a in ARGS]
    assert len(set(keys)) == len(keys)
    f, _ = counted()
    assert len({f.cache_key(a) for a in ARGS}) == len(ARGS)


def test_member_is_not_its_value():
    assert pack_key(Color.RED) != pack_key(1)
    assert pack_key(Shade.RED) != pack_key(1)  # IntEnum == 1, still distinct
    assert pack_key(Shade.RED) != pack_key(Color.RED)
    assert pack_key(PointNT(1, 2)) != pack_key((1, 2))
    assert pack_key(PointNT(1, 2)) != pack_key(OtherNT(1, 2))
    assert pack_key(Frozen(1)) != pack_key(FrozenTwin(1))


def test_equal_values_give_equal_keys():
    assert pack_key(Color(1)) == pack_key(Color.RED)
    assert pack_key(PointNT(x=1, y=2)) == pack_key(PointNT(1, 2))
    assert pack_key(PointTN(1)) == pack_key(PointTN(1, 0))
    # compare=False fields and ClassVars are not part of the key.
    assert pack_key(Frozen(1, note="x")) == pack_key(Frozen(1, note="y"))
    f, calls = counted()
    f(Frozen(1, note="x"))
    f(Frozen(1, note="y"))
    assert len(calls) == 1


def test_values_are_key_packed_recursively():
    # A dict inside a named tuple is canonical (order-independent).
    assert pack_key(PointNT({"a": 1, "b": 2}, 0)) == pack_key(PointNT({"b": 2, "a": 1}, 0))
    with pytest.raises(UnsupportedTypeError):
        pack_key(PointNT(Plain(), 0))


def test_not_keyed_by_value():
    with pytest.raises(UnsupportedTypeError, match="frozen dataclasses"):
        pack_key(Mutable(1))
    with pytest.raises(UnsupportedTypeError):
        pack_key(Plain())
    f, calls = counted()
    f(Mutable(1))
    f(Mutable(1))
    assert len(calls) == 2
    assert f.cache_stats()["key_errors"] == 2


def test_stored_values_use_the_value_codes_not_the_key_codes():
    # Stored values encode these types with codes 12-14 (tests/test_app_types.py),
    # never with the key-only codes 66-68.
    for value, code in ((Color.RED, 14), (PointNT(1, 2), 13), (Frozen(1), 12)):
        assert _core.pack(value)[5] == code
        assert pack_key(value)[5] != code


@pytest.mark.parametrize("value", [Color.RED, PointNT(1, 2), Frozen(1)], ids=repr)
def test_decode_refuses_key_only_codes(value):
    with pytest.raises(SerializationError, match="only used in cache keys"):
        _core.unpack(pack_key(value))


def test_cachekit_key_wins_and_none_opts_out():
    class Custom(enum.Enum):
        A = 1

        def __cachekit_key__(self):
            return "custom"

    class OptOut(typing.NamedTuple):
        x: int
        __cachekit_key__ = None

    assert pack_key(Custom.A)[5] == 65  # KEY_CUSTOM
    with pytest.raises(UnsupportedTypeError):
        pack_key(OptOut(1))


def test_class_change_is_seen():
    # The per-type memo is keyed by the type's version tag.
    @dataclasses.dataclass(frozen=True)
    class Later:
        a: int

    before = pack_key(Later(1))
    Later.__cachekit_key__ = lambda self: "now custom"
    assert pack_key(Later(1)) != before
    del Later.__cachekit_key__
    assert pack_key(Later(1)) == before


def test_memo_holds_no_extra_references_per_call():
    pack_key(Frozen(1))
    pack_key(Color.RED)  # two types, even in one memo set, both stay
    before = sys.getrefcount(Frozen), sys.getrefcount(Color)
    for _ in range(1000):
        pack_key(Frozen(1))
        pack_key(Color.RED)
    assert (sys.getrefcount(Frozen), sys.getrefcount(Color)) == before


def test_many_types_evict_memo_slots():
    types = [collections.namedtuple(f"T{i}", "a") for i in range(100)]
    keys = {pack_key(t(1)) for t in types}
    assert len(keys) == 100
    assert {pack_key(t(1)) for t in types} == keys


def test_key_by_value_predicate():
    by_value = _core._key_by_value
    for tp in (Color, Shade, Perm, PointNT, PointTN, Frozen):
        assert by_value(tp) is True
    for tp in (Mutable, Plain, int, tuple, dict, enum.EnumMeta):
        assert by_value(tp) is False

    class WithKey:
        def __cachekit_key__(self):
            return 1

    assert by_value(WithKey) is True
