"""Application types as cached values: dataclasses, named tuples, Enums,
OrderedDict, defaultdict, builtin subclasses, pydantic and attrs; and the rule
that stored bytes only name classes already trusted for the call."""

import builtins
import collections
import dataclasses
import enum
import importlib
import struct
import sys
from typing import Annotated, NamedTuple, Optional

import pytest

from cachekit import _core, cache, register_type
from cachekit.app_types import REGISTRY, type_name
from cachekit.decorators.types_registry import trusted_types

KEY = "a1" * 32


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    R = 1
    W = 2
    X = 4


class Mode(enum.StrEnum):
    ON = "on"


class Bits(enum.IntFlag):
    A = 1
    B = 8


class Name(str):
    pass


class Count(int):
    pass


class Bag(dict):
    pass


class Items(list):
    pass


class Pair(NamedTuple):
    a: int
    b: list[int]


PointNT = collections.namedtuple("PointNT", "x y")


@dataclasses.dataclass
class Tag:
    label: str
    color: Color = Color.RED


@dataclasses.dataclass
class Node:
    name: str
    tags: list[Tag]
    parent: Optional[Tag] = None
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.total = len(self.tags)


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    x: int
    y: tuple[int, ...] = ()


@dataclasses.dataclass(kw_only=True)
class KwOnly:
    a: int
    b: str


@dataclasses.dataclass
class Unannotated:
    v: int


# --------------------------------------------------------------------------
# Functions under test (annotations make the types trusted)
# --------------------------------------------------------------------------

def make(kind: str, value_factory, annotation, **cache_kw):
    calls = []

    def f(x: int):
        calls.append(x)
        return value_factory()

    f.__annotations__["return"] = annotation
    f.__qualname__ = f"make_{kind}"
    return (cache.secure(master_key=KEY, **cache_kw) if kind == "secure" else cache(**cache_kw))(f), calls


class DictBackend:
    def __init__(self):
        self.data = {}

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value, ttl=None):
        self.data[key] = value

    def delete(self, key):
        return self.data.pop(key, None) is not None

    def exists(self, key):
        return key in self.data

    def health_check(self):
        return True, {}


VALUES = [
    (lambda: Node("n", [Tag("a"), Tag("b", Color.BLUE)], Tag("p")), Node),
    (lambda: Node("n", [], None), Optional[Node]),
    (lambda: [Frozen(1, (2, 3)), Frozen(4)], list[Frozen]),
    (lambda: KwOnly(a=1, b="x"), KwOnly),
    (lambda: Pair(1, [2, 3]), Pair),
    (lambda: PointNT(1, [2]), PointNT),
    (lambda: Color.BLUE, Color),
    (lambda: Level.HIGH, Level),
    (lambda: Perm.R | Perm.X, Perm),
    (lambda: Mode.ON, Mode),
    (lambda: Bits.A | Bits.B, Bits),
    (lambda: collections.OrderedDict([("b", 1), ("a", [2])]), collections.OrderedDict),
    (lambda: collections.defaultdict(list, {"k": [1]}), collections.defaultdict),
    (lambda: Name("hello"), Name),
    (lambda: Count(5), Count),
    (lambda: Bag(a=[1]), Bag),
    (lambda: Items([1, [2]]), Items),
    (lambda: {"tags": [Tag("x")], "lvl": Level.LOW}, dict[str, list[Tag] | Level]),
    (lambda: (Tag("t"), Name("n")), Annotated[tuple[Tag, Name], "doc"]),
]
IDS = [repr(a) for _, a in VALUES]


def check_same(got, want):
    assert got == want
    assert type(got) is type(want)
    if isinstance(want, collections.OrderedDict):
        assert list(got) == list(want)
    if isinstance(want, collections.defaultdict):
        assert got.default_factory is want.default_factory


@pytest.mark.parametrize("factory, annotation", VALUES, ids=IDS)
@pytest.mark.parametrize("kind", ["plain", "secure", "backend"])
def test_round_trips(kind, factory, annotation):
    backend = DictBackend() if kind == "backend" else None
    kw = {"backend": backend, "l1_max_entries": 1} if backend else {}
    f, calls = make(kind, factory, annotation, **kw)
    want = factory()
    first = f(1)
    check_same(first, want)
    if backend is not None:
        assert backend.data, "the value was not stored"
        f.store.clear()
    second = f(1)
    third = f(1)
    assert calls == [1]
    check_same(second, want)
    check_same(third, want)
    if not isinstance(want, (enum.Enum, Count, Name)):
        assert second is not third  # a fresh object per hit


def test_mutable_dataclass_hits_are_fresh_copies():
    @cache
    def f() -> Node:
        return Node("n", [Tag("a")])

    a = f()
    a.tags.append(Tag("b"))
    a.name = "changed"
    b = f()
    assert b == Node("n", [Tag("a")]) and b.total == 1
    assert b.tags[0] is not a.tags[0]


def test_enum_hits_share_the_member():
    @cache
    def f() -> Color:
        return Color.RED

    assert f() is Color.RED and f() is Color.RED


def test_frozen_slots_dataclass_copy():
    value = Frozen(1, (2,))
    copy = _core.copy_value([value])[0]
    assert copy == value and type(copy) is Frozen


def test_defaultdict_factories():
    for factory in (list, dict, set, int, str, tuple, frozenset, float, None):
        d = collections.defaultdict(factory, {"a": 1})
        out = _core.unpack(_core.pack(d))
        check_same(out, d)
    with pytest.raises(_core.UnsupportedTypeError, match="default_factory"):
        _core.pack(collections.defaultdict(lambda: 1))


# --------------------------------------------------------------------------
# Trust
# --------------------------------------------------------------------------


def test_annotation_walk():
    def f() -> Optional[dict[str, list[Node]]] | Pair | None: ...

    types = trusted_types(f)
    assert types == {type_name(t): t for t in (Node, Tag, Color, Pair)}

    def g(): ...

    assert trusted_types(g) is None


def test_unregistered_types_do_not_decode():
    data = _core.pack(Unannotated(1))
    with pytest.raises(_core.SerializationError, match="not trusted"):
        _core.unpack(data)
    assert _core.unpack_trusted(data, {type_name(Unannotated): Unannotated}) == Unannotated(1)


def test_a_name_bound_to_the_wrong_kind_of_class_fails():
    data = _core.pack(Unannotated(1))
    with pytest.raises(_core.SerializationError, match="cannot rebuild"):
        _core.unpack_trusted(data, {type_name(Unannotated): Color})


def hostile_entry(code: int, name: str, body: bytes = b"\x90") -> bytes:
    raw = name.encode()
    payload = b"\x92" + bytes([0xD9, len(raw)]) + raw + body
    return _core.frame(b"\xc9" + struct.pack(">I", len(payload)) + bytes([code]) + payload)


def test_hostile_entry_is_a_miss_and_imports_nothing(monkeypatch):
    backend = DictBackend()
    runs = []

    @cache(backend=backend, l1_max_entries=1)
    def f(x: int) -> Node:
        runs.append(x)
        return Node("n", [])

    f(1)
    (name,) = backend.data
    good = backend.data[name]
    imported = []
    real_import = builtins.__import__

    def spy(mod, *a, **kw):
        imported.append(mod)
        return real_import(mod, *a, **kw)

    def no_import_module(*a, **kw):
        raise AssertionError("importlib.import_module called during decode")

    for code in (12, 13, 14, 17):
        backend.data[name] = hostile_entry(code, "evil_module_xyz:Thing")
        f.store.clear()
        monkeypatch.setattr(builtins, "__import__", spy)
        monkeypatch.setattr(importlib, "import_module", no_import_module)
        try:
            with pytest.raises(_core.SerializationError):
                _core.unpack_trusted(_core.unframe(backend.data[name])[1], trusted_types(f))
            assert f(1) == Node("n", [])
        finally:
            monkeypatch.undo()
        assert "evil_module_xyz" not in imported
        assert "evil_module_xyz" not in sys.modules
        assert backend.data[name] == good  # replaced by the recomputed value
    assert runs == [1, 1, 1, 1, 1]
    assert f.cache_stats()["integrity_errors"] == 4


def test_a_builtin_name_in_hostile_bytes_is_not_resolved():
    with pytest.raises(_core.SerializationError, match="not trusted"):
        _core.unpack(hostile_entry(17, "builtins:eval", b"\xa1x")[24:])


def test_unannotated_function_encodes_but_l2_decode_fails_closed():
    backend = DictBackend()
    runs = []

    @cache(backend=backend, l1_max_entries=1)
    def f(x):
        runs.append(x)
        return Unannotated(x)

    assert f(1) == Unannotated(1)
    assert f(1) == Unannotated(1)  # L1 hit: a copy, no decode needed
    assert backend.data
    f.store.clear()
    assert f(1) == Unannotated(1)  # L2 entry cannot decode: a counted miss
    assert runs == [1, 1]
    assert f.cache_stats()["integrity_errors"] == 1


def test_register_type_makes_it_decode_everywhere():
    @dataclasses.dataclass
    class Later:
        v: int

    backend = DictBackend()
    runs = []

    @cache(backend=backend, l1_max_entries=1)
    def f(x):
        runs.append(x)
        return Later(x)

    try:
        assert register_type(Later) is Later
        f(1)
        f.store.clear()
        assert f(1) == Later(1)
        assert runs == [1]
    finally:
        REGISTRY.pop(type_name(Later))
    with pytest.raises(TypeError):
        register_type(object)


# --------------------------------------------------------------------------
# pydantic and attrs (when installed)
# --------------------------------------------------------------------------

def test_pydantic_models():
    pydantic = pytest.importorskip("pydantic")

    class Inner(pydantic.BaseModel):
        n: int

    class Model(pydantic.BaseModel):
        name: str
        inner: list[Inner]

    for kind in ("plain", "secure", "backend"):
        backend = DictBackend() if kind == "backend" else None
        kw = {"backend": backend, "l1_max_entries": 1} if backend else {}
        f, calls = make(kind, lambda: Model(name="m", inner=[Inner(n=1)]), Model, **kw)
        f(1)
        if backend is not None:
            f.store.clear()
        got = f(1)
        assert got == Model(name="m", inner=[Inner(n=1)]) and type(got) is Model
        assert calls == [1]


def test_attrs_classes():
    attrs = pytest.importorskip("attrs")

    @attrs.define
    class A:
        x: int
        _y: list[int] = attrs.field(factory=list)

    for kind in ("plain", "secure", "backend"):
        backend = DictBackend() if kind == "backend" else None
        kw = {"backend": backend, "l1_max_entries": 1} if backend else {}
        f, calls = make(kind, lambda: A(1, [2]), A, **kw)
        f(1)
        if backend is not None:
            f.store.clear()
        got = f(1)
        assert got == A(1, [2]) and type(got) is A
        assert calls == [1]


def test_immutable_application_values_are_shared_by_l1_hits():
    @cache
    def f() -> Frozen:
        return Frozen(1, (2,))

    @cache
    def g() -> PointNT:
        return PointNT(1, "x")

    @cache
    def h() -> Frozen:
        return Frozen(1, ([2],))  # a list inside: copied per hit

    assert f() is f()
    assert g() is g()
    assert h() is not h() and h() == Frozen(1, ([2],))
    _, _, mutable = _core.pack_stats(Frozen(1, (2,)))
    assert not mutable
    assert _core.pack_stats(Tag("a"))[2]


def test_async_function_results_decode_from_a_backend():
    import asyncio

    backend = DictBackend()
    runs = []

    @cache(backend=backend, l1_max_entries=1)
    async def f(x: int) -> Node:
        runs.append(x)
        return Node("n", [Tag("a")])

    async def main():
        assert await f(1) == Node("n", [Tag("a")])
        f.store.clear()
        got = await f(1)
        assert got == Node("n", [Tag("a")]) and type(got.tags[0]) is Tag

    asyncio.run(main())
    assert runs == [1]


def test_methods_trust_their_return_annotation():
    backend = DictBackend()

    class Repo:
        @classmethod
        @cache(backend=backend, l1_max_entries=1)
        def load(cls, x: int) -> list[Pair]:
            return [Pair(x, [x])]

    assert Repo.load(1) == [Pair(1, [1])]
    Repo.load.store.clear()
    assert Repo.load(1) == [Pair(1, [1])]
    stats = Repo.load.cache_stats()
    assert stats["l2_hits"] == 1 and stats["integrity_errors"] == 0


def test_forward_reference_resolved_after_the_first_failed_decode():
    backend = DictBackend()
    runs = []

    @dataclasses.dataclass
    class Account:
        n: int

        @classmethod
        @cache(backend=backend, l1_max_entries=1)
        def load(cls, n: int) -> "list[Account]":
            runs.append(n)
            return [Account(n)]

    # At decoration "Account" did not exist: it cannot be trusted yet. Make
    # it resolvable the way a module-level class would be.
    Account.load.__wrapped__.__globals__["Account"] = Account
    try:
        assert Account.load(1) == [Account(1)]
        Account.load.store.clear()
        assert Account.load(1) == [Account(1)]  # fails to decode, retries the walk
        Account.load.store.clear()
        assert Account.load(1) == [Account(1)]  # now an L2 hit
        assert runs == [1, 1]
        assert Account.load.cache_stats()["l2_hits"] == 1
    finally:
        del Account.load.__wrapped__.__globals__["Account"]


def test_decode_never_imports():
    good = _core.pack(Node("n", [Tag("a")], None))
    hostile = hostile_entry(12, "os:system")[24:]
    types = trusted_types(make_node)
    seen = []
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def spy(name, *a, **kw):
        seen.append(name)
        return real_import(name, *a, **kw)

    def spy_module(name, *a, **kw):
        seen.append(name)
        return real_import_module(name, *a, **kw)

    results = []
    builtins.__import__, importlib.import_module = spy, spy_module
    try:
        results.append(_core.unpack_trusted(good, types))
        try:
            _core.unpack_trusted(hostile, types)
        except _core.SerializationError as exc:
            results.append(exc)
    finally:
        builtins.__import__, importlib.import_module = real_import, real_import_module
    assert seen == []
    assert results[0] == Node("n", [Tag("a")], None)
    assert "not trusted" in str(results[1])


def make_node() -> Node: ...


def test_mutated_entries_fail_cleanly():
    import random

    rng = random.Random(5)
    good = bytearray(_core.pack([Node("n", [Tag("a"), Tag("b", Color.BLUE)], Tag("p")), Pair(1, [2])]))
    types = {**trusted_types(make_node), type_name(Pair): Pair}
    for _ in range(3000):
        bad = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            _core.unpack_trusted(bytes(bad), types)
        except _core.SerializationError:
            pass


class Loud(str):
    def __str__(self):
        return "overridden"


class Odd(dict):
    def items(self):
        return []


def test_builtin_subclasses_store_their_real_value():
    for value in (Loud("quiet"), Odd(a=1), Count(3)):
        got = _core.unpack_trusted(_core.pack(value), {type_name(type(value)): type(value)})
        assert type(got) is type(value)
        assert got == value and type(value).__mro__[1].__repr__(got) == type(value).__mro__[1].__repr__(value)
