"""Encrypted entries: layout, AAD binding, tamper and truncation detection,
and an independent decryption with the `cryptography` package that uses only
what docs/format.md says."""

from __future__ import annotations

import os
import struct

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cachekit import _core
from cachekit._core import DecryptionError, IntegrityError

DEK = bytes(range(32))
NONCE = bytes(range(100, 112))
FP = b"\x01\x02\x03\x04\x05\x06\x07\x08"
WRAPPED = b"W" * 60
VALUE = {"ssn": "078-05-1120", "name": "Ada", "visits": [1, 2, 3]}


def seal(value=VALUE, **kw):
    args = dict(dek=DEK, nonce=NONCE, key_fp=FP, wrapped_dek=WRAPPED, tenant="acme",
                cache_key=b"ns:mod.f:key")
    args.update(kw)
    return _core._seal_entry(value, **args)


def open_(entry, **kw):
    args = dict(dek=DEK, tenant="acme", cache_key=b"ns:mod.f:key")
    args.update(kw)
    return _core._open_entry(entry, **args)


def test_round_trip_and_header():
    entry = seal()
    assert open_(entry) == VALUE
    h = _core.read_sealed_header(entry)
    assert h["key_fp"] == FP and h["provider"] == 1 and h["wrapped_dek"] == WRAPPED
    assert h["nonce"] == NONCE and h["header_len"] == 24 + 38 + len(WRAPPED)
    assert h["ciphertext_len"] == len(entry) - h["header_len"]
    plain = _core.read_header(entry)
    assert plain["encrypted"] and not plain["compressed"] and plain["checksum"] == 0


def test_no_plaintext_in_entry():
    entry = seal()
    for secret in (b"078-05-1120", b"Ada", msgpack.packb(VALUE)):
        assert secret not in entry


def test_independent_decryption_from_the_documented_layout():
    """Parse with struct and decrypt with cryptography's AESGCM, following
    docs/format.md, "Encrypted entries", and nothing from cachekit."""
    entry = seal()
    magic, version, flags, serializer, hlen, reserved, orig, stored, checksum = struct.unpack_from(
        "<2sBBBBHIIQ", entry, 0
    )
    assert (magic, version, flags, serializer, reserved, checksum) == (b"CK", 1, 2, 1, 0, 0)
    key_fp, provider, wlen = struct.unpack_from("<8sBB", entry, 24)
    nonce = entry[34:46]
    wrapped = entry[46:46 + wlen]
    tag = entry[46 + wlen:hlen]
    assert hlen == 62 + wlen and len(tag) == 16 and wrapped == WRAPPED
    ciphertext = entry[hlen:]
    assert len(ciphertext) == stored == orig
    tenant, cache_key = b"acme", b"ns:mod.f:key"
    aad = (b"CKAAD1" + entry[:hlen - 16] + struct.pack(">H", len(tenant)) + tenant
           + struct.pack(">I", len(cache_key)) + cache_key)
    plaintext = AESGCM(DEK).decrypt(nonce, ciphertext + tag, aad)
    assert msgpack.unpackb(plaintext) == VALUE


def test_entry_written_by_cryptography_opens_in_cachekit():
    payload = msgpack.packb({"k": "v"})
    wrapped = os.urandom(40)
    header = struct.pack("<2sBBBBHIIQ", b"CK", 1, 2, 1, 62 + 40, 0, len(payload), len(payload), 0)
    block = FP + bytes([1, 40]) + NONCE + wrapped
    aad = b"CKAAD1" + header + block + struct.pack(">H", 1) + b"t" + struct.pack(">I", 1) + b"k"
    ct = AESGCM(DEK).encrypt(NONCE, payload, aad)
    entry = header + block + ct[-16:] + ct[:-16]
    assert open_(entry, tenant="t", cache_key=b"k") == {"k": "v"}


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "other"},
        {"tenant": ""},
        {"cache_key": b"ns:mod.f:other"},
        {"cache_key": b""},
        {"dek": bytes(32)},
    ],
)
def test_wrong_context_fails_authentication(change):
    with pytest.raises(DecryptionError):
        open_(seal(), **change)


def test_every_bit_flip_is_detected():
    entry = seal({"a": 1})
    for i in range(len(entry)):
        for bit in range(8):
            bad = bytearray(entry)
            bad[i] ^= 1 << bit
            with pytest.raises((DecryptionError, IntegrityError)):
                open_(bytes(bad))


def test_every_truncation_is_detected():
    entry = seal()
    for n in range(len(entry)):
        with pytest.raises((DecryptionError, IntegrityError)):
            open_(entry[:n])
    with pytest.raises(IntegrityError):
        open_(entry + b"\x00")


def test_replaced_key_fingerprint_or_wrapped_key_fails():
    entry = bytearray(seal())
    entry[24:32] = b"\xff" * 8
    with pytest.raises(DecryptionError):
        open_(bytes(entry))
    entry = bytearray(seal())
    entry[46:46 + len(WRAPPED)] = b"X" * len(WRAPPED)
    with pytest.raises(DecryptionError):
        open_(bytes(entry))


def test_entries_swapped_between_keys_fail():
    a = seal({"v": "a"}, cache_key=b"key-a")
    b = seal({"v": "b"}, cache_key=b"key-b")
    assert open_(a, cache_key=b"key-a") == {"v": "a"}
    with pytest.raises(DecryptionError):
        open_(b, cache_key=b"key-a")


def test_compressed_or_plain_flags_refused():
    entry = bytearray(seal())
    entry[3] = 3  # ENCRYPTED | COMPRESSED
    with pytest.raises(IntegrityError):
        open_(bytes(entry))
    with pytest.raises(IntegrityError):
        open_(_core.encode_entry(VALUE))


def test_bad_parameters():
    with pytest.raises(ValueError):
        seal(dek=b"short")
    with pytest.raises(ValueError):
        seal(nonce=b"short")
    with pytest.raises(ValueError):
        seal(wrapped_dek=b"")
    with pytest.raises(ValueError):
        seal(wrapped_dek=b"x" * 186)
    with pytest.raises(ValueError):
        seal(provider=0)
    with pytest.raises(TypeError):
        _core._seal_entry(VALUE)
    # The largest a writer uses: it fits the 255-byte header with the
    # 8-byte expiry too (readers accept up to 193 without it).
    seal(wrapped_dek=b"x" * 185)


def test_large_and_empty_values():
    big = {"blob": os.urandom(1 << 20)}
    assert open_(seal(big)) == big
    assert open_(seal(None)) is None


def test_error_messages_hold_no_key_material():
    with pytest.raises(DecryptionError) as info:
        open_(seal(), dek=bytes(range(1, 33)))
    text = str(info.value)
    assert DEK.hex() not in text and "authentication failed" in text


@pytest.mark.parametrize("key_len", [300, 377, 378, 379, 2000])
def test_aad_on_the_stack_and_on_the_heap(key_len):
    # Opening builds an AAD of up to 512 bytes on the stack, a larger one on
    # the heap (ck_sealed_open); around the boundary (header 106 + tenant 4 +
    # 12 fixed bytes + cache key) both must authenticate exactly the same bytes.
    cache_key = bytes(range(256)) * (key_len // 256) + b"k" * (key_len % 256)
    entry = seal(cache_key=cache_key)
    assert open_(entry, cache_key=cache_key) == VALUE
    with pytest.raises(DecryptionError):
        open_(entry, cache_key=cache_key[:-1] + b"x")
    with pytest.raises(DecryptionError):
        open_(entry, cache_key=cache_key, tenant="acmf")
