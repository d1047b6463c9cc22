"""Key builder: unambiguous, canonical, stable, and bound to the signature."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit import cache


@cache
def f(*args, **kwargs):
    return None


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=4), children, max_size=4),
    ),
    max_leaves=12,
)


def same_value(a, b) -> bool:
    """Equal with types, recursively (1 == True == 1.0 in Python, not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):  # keys are str here; order does not matter
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and str(a) == str(b)  # 0.0 and -0.0 are distinct keys
    return a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=4), st.lists(values, max_size=4))
def test_distinct_arguments_give_distinct_keys(a, b):
    if same_value(tuple(a), tuple(b)):
        assert f.cache_key(*a) == f.cache_key(*b)
    else:
        assert f.cache_key(*a) != f.cache_key(*b)


def test_classic_ambiguities_are_distinct():
    cases = [(1,), (True,), (1.0,), ("1",), (b"1",), (bytearray(b"1"),), ((1,),), ([1],),
             ({1},), (frozenset({1}),), (1, 23), (12, 3), ("a", "bc"), ("ab", "c"), ((), ()),
             (((),),), (None,), (), (0,), (-0.0,), (0.0,), (2**64,), (2**64 - 1,), (-(2**63) - 1,)]
    keys = [f.cache_key(*c) for c in cases]
    assert len(set(keys)) == len(cases)


def test_positional_vs_varargs_vs_kwargs_are_distinct():
    @cache
    def g(a, *args, **kwargs):
        return None

    assert g.cache_key(1, 2) != g.cache_key(1, x=2)
    assert g.cache_key(1, (2,)) != g.cache_key(1, 2)
    assert g.cache_key(1, x=2, y=3) == g.cache_key(1, y=3, x=2)


def test_rich_types_as_keys():
    args = [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), dt.date(2026, 1, 2),
            decimal.Decimal("1.10"), uuid.UUID(int=5), dt.timedelta(seconds=3)]
    assert f.cache_key(*args) == f.cache_key(*args)
    assert f.cache_key(decimal.Decimal("1.10")) != f.cache_key(decimal.Decimal("1.1"))


def test_equal_containers_in_any_order_share_a_key():
    assert f.cache_key({"a": 1, "b": 2}) == f.cache_key({"b": 2, "a": 1})
    assert f.cache_key({3, 1, 2}) == f.cache_key({2, 3, 1})
    big = set(range(1000))
    assert f.cache_key(big) == f.cache_key(set(reversed(range(1000))))


def test_function_identity_and_namespace_separate_keys():
    @cache
    def one(x):
        return x

    @cache
    def two(x):
        return x

    @cache(namespace="other")
    def three(x):
        return x

    digests = {k.rsplit(":", 1)[1] for k in (one.cache_key(1), two.cache_key(1), three.cache_key(1))}
    assert len(digests) == 3


def test_keys_are_stable_across_processes():
    """The key depends only on the function's identity and arguments, not on
    hash randomisation or object addresses."""
    import os
    import subprocess
    import sys

    code = (
        "from cachekit import cache\n"
        "@cache\n"
        "def g(a, b=2, **kw): pass\n"
        "print(g.cache_key('x', {'k': [1, 2.5, None]}, z={3, 4}))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outs) == 1


@cache
def one(x):
    return None


@settings(max_examples=500, deadline=None)
@given(st.one_of(
    scalars,
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
                     -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
                     2**30 - 1, 2**30, -(2**30)]),
    st.text(max_size=300),
    st.binary(min_size=250, max_size=70000),
    st.sampled_from([0.0, -0.0, float("inf"), float("-inf"), float("nan")]),
))
def test_scalar_fast_path_matches_the_general_packer(x):
    """Positional scalars take the scalar fast path in py_keys.c, keyword calls
    the general packer: both must give the same key bytes."""
    if isinstance(x, str):
        x.encode("utf-8", "surrogatepass")  # a non-ASCII str may now cache its UTF-8 form
    assert one.cache_key(x) == one.cache_key(x=x)


def test_scalar_fast_path_after_utf8_cached():
    s = "h\u00e9llo \u4e16\u754c"
    before = one.cache_key(x=s)
    s.encode()  # does not cache; PyUnicode_AsUTF8 via the general path does
    assert one.cache_key(s) == before == one.cache_key(s)
