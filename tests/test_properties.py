"""Properties over generated inputs (Hypothesis): distinct calls never share a
key; any value round trips through every tier; any bytes given to a decoder
of stored entries give a value or a CachekitError, never anything else."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachekit import cache
from cachekit._core import Keyring, _pack_key, decode_entry, unframe, unpack
from cachekit.exceptions import CachekitError
from test_codec import hashables, values


def canon(v):
    """What a key must distinguish: the exact type and the value, with
    float identity by bits (so -0.0 and 0.0 differ, and every NaN is one)."""
    if isinstance(v, float):
        return ("float", "nan" if math.isnan(v) else v.hex())
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(canon(x) for x in v))
    if isinstance(v, (set, frozenset)):
        return (type(v).__name__, tuple(sorted(repr(canon(x)) for x in v)))
    if isinstance(v, dict):
        return ("dict", tuple(sorted(repr((canon(k), canon(x))) for k, x in v.items())))
    return (type(v).__name__, repr(v))


@settings(max_examples=500, deadline=None)
@given(hashables, hashables)
def test_distinct_arguments_never_share_a_key(a, b):
    same_key = _pack_key((a,)) == _pack_key((b,))
    assert same_key == (canon(a) == canon(b)), (a, b)


@settings(max_examples=300, deadline=None)
@given(st.tuples(hashables, hashables), st.tuples(hashables, hashables))
def test_distinct_calls_of_a_decorated_function_get_distinct_cache_keys(x, y):
    @cache(backend=None)
    def f(a, b):
        return None

    if canon(x) != canon(y):
        assert f.cache_key(*x) != f.cache_key(*y)
    else:
        assert f.cache_key(*x) == f.cache_key(*y)


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


def equal(a, b):
    return canon(a) == canon(b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_any_value_round_trips_through_l1_l2_and_encryption(value):
    backend = DictBackend()
    plain = cache(backend=backend, l1_max_entries=1)(lambda: value)
    secure = cache.secure(master_key="ab" * 32, backend=backend, l1_max_entries=1)(lambda: value)
    for f in (plain, secure):
        assert equal(f(), value)  # miss
        assert equal(f(), value)  # L1 hit
        f.store.clear()
        assert equal(f(), value)  # from the backend (decoded, or decrypted)


KEYRING = Keyring(bytes(range(32)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_value_or_a_cachekit_error(data):
    for decoder in (unpack, decode_entry, unframe,
                    lambda d: KEYRING.open_value(d, cache_key=b"k")):
        try:
            decoder(data)
        except CachekitError:
            pass
