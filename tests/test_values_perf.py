"""Large values through the spare block and in-place framing, and the
serializer objects' fast paths (docs/performance-values.md)."""

from __future__ import annotations

import os
import threading

import pytest

from cachekit import _core
from cachekit.exceptions import IntegrityError
from cachekit.serializers import EncryptionWrapper, StandardSerializer
from cachekit.serializers.base import SerializationFormat, SerializationMetadata

KEY = bytes(range(32))
CK = b"cachekit:test.values:\x91\x01"


@pytest.mark.parametrize("size", [0, 100, 255, 256, 70_000, 1 << 20, (17 << 20)])
def test_entries_of_every_size_round_trip_plain_and_sealed(size):
    value = {"blob": os.urandom(size), "text": "ab" * (size // 4)}
    entry = _core.encode_entry(value)
    assert _core.read_header(entry)["stored_len"] == len(entry) - 24
    assert _core.decode_entry(entry) == value
    kr = _core.Keyring(KEY)
    sealed = kr.seal_value(value, cache_key=CK)
    assert kr.open_value(sealed, cache_key=CK) == value
    assert kr.open(sealed, cache_key=CK) == (1, _core.pack(value))
    # seal() of bytes writes the same layout, trimmed to what was written.
    raw = kr.seal(b"x" * size, cache_key=CK)
    assert kr.open(raw, cache_key=CK) == (1, b"x" * size)


def test_compressed_entries_shrink_the_result_and_decode():
    payload = b"abc" * 400_000
    entry = _core.frame(payload)
    assert _core.read_header(entry)["compressed"] and len(entry) < len(payload) // 10
    assert _core.unframe(entry) == (1, payload)
    assert _core.decode_entry(_core.encode_entry({"p": payload})) == {"p": payload}


def test_threads_sharing_the_spare_block_get_their_own_values():
    # Large values release the GIL while framing and hashing; each thread
    # must still see its own bytes (the block is lent to one call at a time).
    kr = _core.Keyring(KEY)
    errors = []

    def work(seed: int) -> None:
        value = {"blob": bytes([seed]) * (300_000 + seed), "n": seed}
        for _ in range(30):
            if _core.decode_entry(_core.encode_entry(value)) != value:
                errors.append(("plain", seed))
            if kr.open_value(kr.seal_value(value, cache_key=CK), cache_key=CK) != value:
                errors.append(("sealed", seed))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_tampered_large_entry_is_still_refused():
    entry = bytearray(_core.encode_entry({"blob": os.urandom(200_000)}))
    entry[-1] ^= 1
    with pytest.raises(IntegrityError):
        _core.decode_entry(bytes(entry))


def test_standard_serializer_metadata_is_the_dataclass_it_was():
    s = StandardSerializer()
    data, meta = s.serialize({"a": 1})
    assert type(meta) is SerializationMetadata
    assert meta == SerializationMetadata(SerializationFormat.MSGPACK, compressed=False, original_type="dict")
    assert meta.to_dict()["serialization_format"] == "msgpack"
    big, meta = s.serialize("x" * 10_000)
    assert meta.compressed is True and s.deserialize(big, meta) == "x" * 10_000
    with pytest.raises(IntegrityError):
        s.deserialize(data, SerializationMetadata(SerializationFormat.ORJSON))


class _Inner(StandardSerializer):
    """Not the exact default type: takes the general (Python) path."""


def test_encryption_wrapper_fast_path_matches_the_general_path():
    fast = EncryptionWrapper(master_key=KEY)
    general = EncryptionWrapper(_Inner(enable_integrity_checking=False), master_key=KEY)
    assert fast._direct and not general._direct
    value = {"id": 1, "tags": ("a", "b"), "s": {1, 2}}
    for writer, reader in ((fast, general), (general, fast)):
        data, meta = writer.serialize(value, CK)
        assert reader.deserialize(data, meta, CK) == value
        assert meta.encrypted and meta.tenant_id == "default"
        assert meta.key_fingerprint == fast.keyring.fingerprint
    assert fast.serialize(value, CK)[1] == general.serialize(value, CK)[1]


def test_encryption_wrapper_fast_path_refuses_other_serializers_entries():
    pytest.importorskip("orjson")
    from cachekit.serializers import OrjsonSerializer

    json_wrapper = EncryptionWrapper(OrjsonSerializer(enable_integrity_checking=False), master_key=KEY)
    data, _ = json_wrapper.serialize({"a": 1}, CK)
    with pytest.raises(IntegrityError):
        EncryptionWrapper(master_key=KEY).deserialize(data, None, CK)
