"""Every input kept in fuzz/regressions/ (crash inputs found by fuzzing and the
hostile inputs of fuzz/make_corpus.py: hash floods, deep nesting, huge length
claims, truncated LZ4) through each Python-level decoder of stored bytes:
each must give a value or raise a CachekitError subclass, nothing else.

RedisClient takes no raw reply bytes, so the RESP inputs of
fuzz/regressions/redis_reply/ are only fed to the decoders below; the reply
reader itself is covered by the fuzz_redis_reply harness (docs/fuzzing.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from cachekit import _core

REGRESSIONS = Path(__file__).resolve().parent.parent / "fuzz" / "regressions"
INPUTS = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())
KEYRING = _core.Keyring(bytes(32))  # the fuzz_seal harness's master key

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "unpack": _core.unpack,
    "decode_entry": _core.decode_entry,
    "unframe": _core.unframe,
    "keyring_open": KEYRING.open,
    "keyring_open_value": KEYRING.open_value,
}


def test_regressions_exist() -> None:
    targets = {p.parent.name for p in INPUTS}
    assert {"entry", "py_decode", "seal", "redis_reply"} <= targets


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_value_or_cachekit_error(path: Path, decoder: str) -> None:
    data = path.read_bytes()
    try:
        DECODERS[decoder](data)
    except _core.CachekitError:
        pass


@pytest.mark.parametrize(
    "name", ["hash-flood-map", "hash-flood-set", "hash-flood-frozenset", "deep-array",
             "deep-map", "huge-array32", "huge-map32", "huge-str32", "huge-bin32", "huge-ext32"]
)
def test_hostile_msgpack_is_refused(name: str) -> None:
    data = (REGRESSIONS / "py_decode" / f"hostile-{name}").read_bytes()
    with pytest.raises(_core.SerializationError):
        _core.unpack(data)


@pytest.mark.parametrize("name", ["huge-original-len", "truncated-lz4-1", "truncated-lz4-4",
                                  "lz4-junk-max-ratio", "hash-flood-map-entry"])
def test_hostile_entries_are_refused(name: str) -> None:
    data = (REGRESSIONS / "entry" / f"hostile-{name}").read_bytes()
    with pytest.raises(_core.CachekitError):
        _core.decode_entry(data)
