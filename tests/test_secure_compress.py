"""Opt-in compression before encryption (docs/security.md, "Compression
before encryption"; docs/format.md, "Encrypted entries"): off by default,
LZ4 only when it shrinks the plaintext, authenticated before it is decoded,
and readable from the documented layout with `cryptography` and a
20-line LZ4 block decoder written from the LZ4 block format description."""

from __future__ import annotations

import os
import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cachekit import cache
from cachekit._core import DecryptionError, IntegrityError, Keyring

MASTER = bytes(range(32))
VALUE = b"account 42 balance 100; " * 200  # 4,800 bytes, very repetitive


def lz4_block_decode(src: bytes, size: int) -> bytes:
    """The LZ4 block format: sequences of a token (literal length high
    nibble, match length - 4 low nibble, 15 = more length bytes follow),
    the literals, then a 2-byte little-endian offset back into the output;
    the last sequence has literals only."""
    out, i = bytearray(), 0
    while True:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        out += src[i:i + lit]
        i += lit
        if i >= len(src):
            break
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        match = (token & 15) + 4
        if token & 15 == 15:
            while True:
                b = src[i]
                i += 1
                match += b
                if b != 255:
                    break
        for _ in range(match):
            out.append(out[-offset])
    assert len(out) == size
    return bytes(out)


def hkdf(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


def test_off_by_default():
    entry = Keyring(MASTER).seal(VALUE, cache_key=b"k")
    assert entry[3] == 0x02 and len(entry) == len(VALUE) + 122


def test_compressed_entry_round_trip_and_flags():
    kr = Keyring(MASTER, compress_min=1024)
    entry = kr.seal(VALUE, cache_key=b"k")
    assert entry[3] == 0x03  # ENCRYPTED | COMPRESSED
    orig, stored = struct.unpack_from("<II", entry, 8)
    assert orig == len(VALUE) and stored < len(VALUE) // 10 and len(entry) == entry[5] + stored
    assert kr.open(entry, cache_key=b"k") == (1, VALUE)
    # Any reader opens it: compression is the writer's choice.
    assert Keyring(MASTER).open(entry, cache_key=b"k") == (1, VALUE)


def test_only_when_it_shrinks_and_above_the_threshold():
    kr = Keyring(MASTER, compress_min=1024)
    random = os.urandom(4096)
    assert kr.seal(random, cache_key=b"k")[3] == 0x02
    assert kr.seal(VALUE[:1000], cache_key=b"k")[3] == 0x02  # below compress_min
    assert Keyring(MASTER, compress_min=1).seal(b"a" * 64, cache_key=b"k")[3] == 0x03


def test_tampered_compressed_entry_is_refused():
    kr = Keyring(MASTER, compress_min=1024)
    entry = bytearray(kr.seal(VALUE, cache_key=b"k"))
    for pos in (len(entry) - 1, entry[5], entry[5] - 1, 9, 40):
        bad = bytearray(entry)
        bad[pos] ^= 0x01
        with pytest.raises((DecryptionError, IntegrityError)):
            kr.open(bytes(bad), cache_key=b"k")
    # Another cache key: the AAD binds it as for uncompressed entries.
    with pytest.raises(DecryptionError):
        kr.open(bytes(entry), cache_key=b"other")


def test_forged_ratio_refused_before_decryption():
    kr = Keyring(MASTER, compress_min=1024)
    entry = bytearray(kr.seal(VALUE, cache_key=b"k"))
    stored = struct.unpack_from("<I", entry, 12)[0]
    struct.pack_into("<I", entry, 8, stored * 256)  # beyond max_ratio 255
    with pytest.raises(IntegrityError):
        kr.open(bytes(entry), cache_key=b"k")
    with pytest.raises(IntegrityError):  # beyond max_size
        kr.open(kr.seal(VALUE, cache_key=b"k"), cache_key=b"k", max_size=1000)


def test_expiring_compressed_entry():
    @cache.secure(master_key=MASTER.hex(), ttl=60, backend=None, compress_min=256)
    def report(n):
        return "row;" * n

    assert report(500) == "row;" * 500
    assert report(500) == "row;" * 500
    info = report.cache_info()
    assert info.hits == 1 and info.currbytes < 1000  # the 2,000-byte result is stored compressed


def test_decrypt_with_other_libraries_from_the_documented_layout():
    kr = Keyring(MASTER, compress_min=1024)
    tenant, cache_key = b"default", b"ns:mod.f:k"
    entry = kr.seal(VALUE, cache_key=cache_key)
    hlen, w = entry[5], entry[33]
    orig, stored = struct.unpack_from("<II", entry, 8)
    kek = hkdf(MASTER, b"cachekit/v1/kek", tenant, 32)
    wrapped = entry[46:46 + w]
    wrap_aad = b"CKWRAP1" + struct.pack(">H", len(tenant)) + tenant
    dek = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], wrap_aad)
    aad = (b"CKAAD1" + entry[:hlen - 16] + struct.pack(">H", len(tenant)) + tenant
           + struct.pack(">I", len(cache_key)) + cache_key)
    block = AESGCM(dek).decrypt(entry[34:46], entry[hlen:] + entry[hlen - 16:hlen], aad)
    assert len(block) == stored
    assert lz4_block_decode(block, orig) == VALUE


def test_bad_compress_min_refused():
    with pytest.raises(ValueError):
        Keyring(MASTER, compress_min=-1)
