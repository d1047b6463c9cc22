"""Cached methods: which instances may share an entry, and entry lifetime."""

import dataclasses
import enum
import gc
import pickle
import typing
import weakref

import pytest

from cachekit import cache
from cachekit.exceptions import UnsupportedTypeError


class PriceService:
    def __init__(self, currency, rate):
        self.currency = currency
        self.rate = rate
        self.runs = 0

    @cache(backend=None)
    def price(self, amount):
        self.runs += 1
        return (self.currency, amount * self.rate)


def test_instances_with_different_state_never_share_an_entry():
    usd, eur = PriceService("USD", 1.0), PriceService("EUR", 0.9)
    assert usd.price(100) == ("USD", 100.0)
    assert eur.price(100) == ("EUR", 90.0)
    assert usd.price(100) == ("USD", 100.0) and eur.price(100) == ("EUR", 90.0)
    assert usd.runs == 1 and eur.runs == 1


def test_identity_entries_do_not_keep_the_instance_alive_and_die_with_it():
    svc = PriceService("USD", 2.0)
    svc.price(1)
    svc.price(2)
    assert PriceService.price.cache_stats()["entries"] >= 2
    before = PriceService.price.cache_stats()["entries"]
    ref = weakref.ref(svc)
    del svc
    gc.collect()
    assert ref() is None, "the cache kept the instance alive"
    assert PriceService.price.cache_stats()["entries"] == before - 2


def test_a_new_instance_at_a_dead_ones_address_starts_empty():
    # CPython reuses freed memory: loop until an address repeats, and check
    # the newcomer never sees the dead instance's value.
    seen = {}
    for i in range(200):
        svc = PriceService(f"C{i}", 1.0)
        addr = id(svc)
        assert svc.price(1) == (f"C{i}", 1.0)
        if addr in seen:
            break
        seen[addr] = i
        del svc


def test_entries_die_with_instances_in_reference_cycles():
    class Node:
        def __init__(self):
            self.me = self

        @cache(backend=None)
        def value(self):
            return 1

    n = Node()
    n.value()
    assert Node.value.cache_stats()["entries"] == 1
    del n
    gc.collect()
    assert Node.value.cache_stats()["entries"] == 0


def test_invalidate_on_the_bound_method_needs_no_instance():
    svc = PriceService("USD", 1.0)
    svc.price(5)
    assert svc.price.invalidate_cache(5) is True
    assert svc.price.invalidate_cache(5) is False
    svc.price(5)
    assert svc.runs == 2
    assert PriceService.price.invalidate_cache(svc, 5) is True  # the unbound form still works


def test_bound_method_behaves_like_a_method():
    svc = PriceService("USD", 1.0)
    m = svc.price
    assert m.__self__ is svc and m.__func__ is PriceService.price
    assert m.__name__ == "price" and m.__wrapped__ is PriceService.price.__wrapped__
    assert m == svc.price and hash(m) == hash(svc.price)
    assert m != PriceService("USD", 1.0).price
    assert m(3) == ("USD", 3.0) and m(3) == ("USD", 3.0) and svc.runs == 1
    assert m(amount=3) == ("USD", 3.0) and svc.runs == 1
    assert m.cache_key(3) == PriceService.price.cache_key(svc, 3)
    assert m.cache_info().hits >= 2
    assert "bound method" in repr(m)


def test_bound_method_passes_many_arguments():
    class Wide:
        @cache(backend=None)
        def f(self, *args, **kwargs):
            return (args, tuple(sorted(kwargs.items())))

    w = Wide()
    args = tuple(range(20))
    assert w.f(*args, k=1) == (args, (("k", 1),))
    bound = w.f
    assert bound(*args, k=1) == (args, (("k", 1),))


def test_cachekit_key_shares_by_the_users_key():
    class Account:
        runs = 0

        def __init__(self, ident):
            self.ident = ident

        def __cachekit_key__(self):
            return self.ident

        @cache(backend=None)
        def balance(self):
            Account.runs += 1
            return self.ident * 10

    assert Account(1).balance() == 10 and Account(1).balance() == 10
    assert Account(2).balance() == 20
    assert Account.runs == 2


@dataclasses.dataclass(frozen=True)
class FrozenPoint:
    x: int
    y: int

    @cache(backend=None)
    def norm1(self):
        FrozenPoint.runs += 1
        return abs(self.x) + abs(self.y)


FrozenPoint.runs = 0


class Pair(typing.NamedTuple):
    a: int
    b: int

    @cache(backend=None)
    def total(self):
        Pair.runs += 1
        return self.a + self.b


Pair.runs = 0


class Color(enum.Enum):
    RED = 1
    BLUE = 2

    @cache(backend=None)
    def label(self):
        Color.runs += 1
        return self.name.lower()


Color.runs = 0


def test_value_types_as_self_share_between_equal_instances():
    assert FrozenPoint(1, 2).norm1() == 3 and FrozenPoint(1, 2).norm1() == 3
    assert FrozenPoint(2, 2).norm1() == 4
    assert Pair(1, 2).total() == 3 and Pair(1, 2).total() == 3 and Pair(2, 2).total() == 4
    assert Color.RED.label() == "red" and Color.RED.label() == "red"
    assert Color.BLUE.label() == "blue"
    assert Color.runs == 2
    # Pair is a tuple (not weakly referenceable): only value keying can work.
    assert Pair.runs == 2
    assert FrozenPoint.runs == 2


def test_untrackable_self_is_reported_and_the_method_still_runs(cachekit_log):
    class Slotted:
        __slots__ = ("v",)

        def __init__(self, v):
            self.v = v

        @cache(backend=None)
        def get(self):
            return self.v

    assert Slotted(1).get() == 1 and Slotted(2).get() == 2
    assert Slotted.get.cache_stats()["key_errors"] == 2
    assert "__weakref__" in cachekit_log.text
    with pytest.raises(UnsupportedTypeError, match="__weakref__"):
        Slotted.get.cache_key(Slotted(1))


def test_cache_clear_drops_instance_entries():
    svc = PriceService("USD", 1.0)
    svc.price(1)
    PriceService.price.cache_clear()
    svc.price(1)
    assert svc.runs == 2


@cache(backend=None)
def module_level(x):
    return x + 1


def test_decorated_functions_pickle_by_reference():
    assert pickle.loads(pickle.dumps(module_level)) is module_level
    svc = Color.RED
    assert pickle.loads(pickle.dumps(svc.label))() == "red"
