"""Reference and memory leak checks without a debug build: each public entry
point runs 10,000 times (hits, misses, invalidation, keys, secure calls, the
codec, entries, and the error paths) and the number of gc-tracked objects,
the interpreter's allocated blocks and tracemalloc's traced memory must come
back to where they were, within a small slack. A leaked reference or buffer
per call shows up as at least 10,000 objects or blocks."""

from __future__ import annotations

import datetime as dt
import gc
import os
import sys
import tracemalloc

import pytest

from cachekit import _core, cache
from cachekit._core import (DecryptionError, IntegrityError, Keyring, L1Store, SerializationError,
                            UnsupportedTypeError)

N = int(os.environ.get("REFCOUNT_CALLS", "10000"))   # scripts/valgrind.sh runs fewer
SLACK_OBJECTS = 50        # gc-tracked objects
SLACK_BLOCKS = 200        # sys.getallocatedblocks()
SLACK_BYTES = 64 * 1024   # tracemalloc, current traced size

KEY = bytes(range(32))
VALUE = {"id": 7, "name": "Ada", "tags": ["a", "b"], "blob": b"\x00" * 40, "score": 1.5,
         "when": dt.datetime(2024, 1, 2, 3, 4, 5), "nested": {"t": (1, 2.0, None, True)}}
BIG = {"rows": ["x" * 200] * 20}   # over the LZ4 threshold


@cache
def plain(n, *, scale=2):
    return {"n": n * scale, "items": [n, str(n)]}


@cache.secure(master_key="ab" * 32)
def secure(n):
    return {"n": n, "secret": "s" * 20}


@cache
def raises(n):
    raise ValueError(n)


_keyring = Keyring(KEY)
_sealed = _keyring.seal_value(VALUE, cache_key=b"k")
_tampered = _sealed[:-1] + bytes([_sealed[-1] ^ 1])
_nonce = b"\x01" * 12
_aead = _core.aes256gcm_seal(KEY, _nonce, b"plaintext", aad=b"aad")
_bad_aead = _aead[:-1] + bytes([_aead[-1] ^ 1])
_entry = _core.encode_entry(BIG)
_bad_entry = _entry[:-1] + bytes([_entry[-1] ^ 1])
_store = L1Store(max_entries=64)


def _expect(exc, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc:
        return
    raise AssertionError(f"{fn} did not raise {exc}")


def _miss_plain():
    plain.invalidate_cache(3)
    plain(3)


def _miss_secure():
    secure.invalidate_cache(3)
    secure(3)


def _l1_store():
    _store.put(b"k", VALUE, ttl=60)
    _store.get(b"k")
    _store.get(b"absent", None)
    _store.remove(b"k")


CASES = {
    "decorated hit": lambda: plain(7),
    "decorated hit, keyword": lambda: plain(7, scale=2),
    "decorated miss + invalidate": _miss_plain,
    "cache_key": lambda: plain.cache_key(7, scale=3),
    "function raises (not cached)": lambda: _expect(ValueError, raises, 1),
    "secure hit": lambda: secure(7),
    "secure miss + invalidate": _miss_secure,
    "pack + unpack": lambda: _core.unpack(_core.pack(VALUE)),
    "copy_value": lambda: _core.copy_value(VALUE),
    "encode + decode entry (LZ4)": lambda: _core.decode_entry(_core.encode_entry(BIG)),
    "Keyring seal_value + open_value": lambda: _keyring.open_value(_keyring.seal_value(VALUE, cache_key=b"k"),
                                                                   cache_key=b"k"),
    "L1Store put/get/remove": _l1_store,
    "pack unsupported type": lambda: _expect(UnsupportedTypeError, _core.pack, {"x": [object()]}),
    "unpack truncated": lambda: _expect(SerializationError, _core.unpack, _core.pack(VALUE)[:-3]),
    "decode corrupt entry": lambda: _expect(IntegrityError, _core.decode_entry, _bad_entry),
    "open tampered sealed entry": lambda: _expect(DecryptionError, _keyring.open_value, _tampered,
                                                  cache_key=b"k"),
    "open with the wrong cache key": lambda: _expect(DecryptionError, _keyring.open_value, _sealed,
                                                     cache_key=b"other"),
    "aes256gcm_open bad tag": lambda: _expect(DecryptionError, _core.aes256gcm_open, KEY, _nonce, _bad_aead,
                                              aad=b"aad"),
}


def _measure() -> tuple[int, int]:
    gc.collect()
    return len(gc.get_objects()), sys.getallocatedblocks()


def _growth(op) -> tuple[int, int, int]:
    """(gc objects, allocated blocks, traced bytes) added by N calls of op."""
    for _ in range(200):   # warm: caches, interned keys, lazily created types
        op()
    objects0, blocks0 = _measure()
    tracemalloc.start()
    try:
        traced0, _ = tracemalloc.get_traced_memory()
        for _ in range(N):
            op()
        gc.collect()
        traced1, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    objects1, blocks1 = _measure()
    return objects1 - objects0, blocks1 - blocks0, traced1 - traced0


@pytest.mark.parametrize("name", list(CASES))
def test_no_growth_over_10000_calls(name):
    objects, blocks, traced = _growth(CASES[name])
    assert objects <= SLACK_OBJECTS, f"{name}: {objects} more gc objects"
    assert blocks <= SLACK_BLOCKS, f"{name}: {blocks} more allocated blocks"
    assert traced <= SLACK_BYTES, f"{name}: {traced} more bytes traced"


def test_the_check_sees_one_leaked_object_or_bytes_per_call():
    kept: list = []
    # Under PYTHONMALLOC=malloc (scripts/valgrind.sh) there are no pymalloc
    # blocks to count: sys.getallocatedblocks() stays 0.
    pymalloc = not os.environ.get("PYTHONMALLOC", "").startswith("malloc")
    objects, blocks, traced = _growth(lambda: kept.append([]))
    assert objects >= N * 0.9 and (blocks >= N or not pymalloc) and traced >= N * 40
    kept.clear()
    # A leaked non-container (not gc-tracked) still shows in blocks and bytes.
    objects, blocks, traced = _growth(lambda: kept.append(bytes(40)))
    assert (blocks >= N or not pymalloc) and traced >= N * 40
