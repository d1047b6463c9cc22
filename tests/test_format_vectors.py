"""The encrypted worked example of docs/format.md, checked from the document.

The hex values are parsed out of docs/format.md (between the
encrypted-example markers), so the document and this test cannot drift.
Part (a) re-derives every value from the master key and the documented
layout with only the `cryptography` package and `struct`, no cachekit code;
part (b) has cachekit open the same stored entry, reproduce it, and answer
the documented call from it.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: E402

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "format.md"
NAMES = ["master_key", "tenant", "key_fp", "kek", "dek", "wrap_nonce", "wrap_aad",
         "wrapped_dek", "plaintext", "key_prefix", "key_bytes", "cache_key", "nonce", "aad",
         "ciphertext", "tag", "entry"]


def doc_vectors() -> dict[str, bytes]:
    text = FORMAT_MD.read_text(encoding="utf-8")
    m = re.search(r"<!-- encrypted-example:begin -->\n```text\n(.*?)```\n"
                  r"<!-- encrypted-example:end -->", text, re.S)
    assert m, "docs/format.md lost its encrypted-example block"
    values: dict[str, str] = {}
    name = None
    for line in m.group(1).splitlines():
        if not line.strip():
            continue
        if line[0].isspace():  # continues the value above
            assert name is not None
            values[name] += line.strip()
        else:
            name, hexdigits = line.split(maxsplit=1)
            values[name] = hexdigits.strip()
    assert list(values) == NAMES
    return {k: bytes.fromhex(v) for k, v in values.items()}


V = doc_vectors()


def hkdf(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


# -------------------------------------- (a) from the document alone, no cachekit


def test_inputs_are_the_documented_ones():
    assert V["master_key"] == bytes(range(32))
    assert V["tenant"] == b"acme"
    assert V["dek"] == bytes(range(0xC0, 0xE0))
    assert V["wrap_nonce"] == bytes(range(0xA0, 0xAC))
    # msgpack {"ssn": "078-05-1120"}: fixmap 1, fixstr 3, fixstr 11.
    assert V["plaintext"] == b"\x81\xa3ssn\xab078-05-1120"
    assert V["key_prefix"] == b"demo:billing.ssn_of:"
    # The bound call [42], then the tenant as a msgpack str.
    assert V["key_bytes"] == b"\x91\x2a" + b"\xa4acme"


def test_every_value_rederived_with_cryptography():
    m, tenant = V["master_key"], V["tenant"]
    assert hkdf(m, b"cachekit/v1/fingerprint", b"", 8) == V["key_fp"]
    assert hkdf(m, b"cachekit/v1/kek", tenant, 32) == V["kek"]
    wrap_aad = b"CKWRAP1" + struct.pack(">H", len(tenant)) + tenant
    assert wrap_aad == V["wrap_aad"]
    wrapped = V["wrap_nonce"] + AESGCM(V["kek"]).encrypt(V["wrap_nonce"], V["dek"], wrap_aad)
    assert wrapped == V["wrapped_dek"] and len(wrapped) == 60
    cache_key = V["key_prefix"] + V["key_bytes"]
    assert cache_key == V["cache_key"]
    assert V["nonce"] == bytes.fromhex("7c3a91e4") + (0).to_bytes(8, "big")

    n, w = len(V["plaintext"]), len(wrapped)
    hlen = 62 + w
    header = (b"CK" + bytes([1, 0x02, 1, hlen]) + b"\0\0" + struct.pack("<II", n, n)
              + bytes(8) + V["key_fp"] + bytes([1, w]) + V["nonce"] + wrapped)
    aad = (b"CKAAD1" + header + struct.pack(">H", len(tenant)) + tenant
           + struct.pack(">I", len(cache_key)) + cache_key)
    assert aad == V["aad"]
    sealed = AESGCM(V["dek"]).encrypt(V["nonce"], V["plaintext"], aad)
    assert sealed[:-16] == V["ciphertext"] and sealed[-16:] == V["tag"]
    assert header + V["tag"] + V["ciphertext"] == V["entry"]


def test_entry_decrypts_from_the_master_key_by_the_documented_layout():
    entry, m = V["entry"], V["master_key"]
    tenant, cache_key = b"acme", b"demo:billing.ssn_of:" + bytes.fromhex("912aa461636d65")
    magic, version, flags, serializer, hlen, reserved, orig, stored, checksum = \
        struct.unpack_from("<2sBBBBHIIQ", entry)
    assert (magic, version, flags, serializer, reserved, checksum) == (b"CK", 1, 2, 1, 0, 0)
    assert orig == stored == len(entry) - hlen
    w = entry[33]
    assert entry[32] == 1 and hlen == 62 + w
    assert entry[24:32] == hkdf(m, b"cachekit/v1/fingerprint", b"", 8)
    kek = hkdf(m, b"cachekit/v1/kek", tenant, 32)
    wrapped = entry[46:46 + w]
    wrap_aad = b"CKWRAP1" + struct.pack(">H", len(tenant)) + tenant
    dek = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], wrap_aad)
    aad = (b"CKAAD1" + entry[:hlen - 16] + struct.pack(">H", len(tenant)) + tenant
           + struct.pack(">I", len(cache_key)) + cache_key)
    plaintext = AESGCM(dek).decrypt(entry[34:46], entry[hlen:] + entry[hlen - 16:hlen], aad)
    assert dek == V["dek"] and plaintext == V["plaintext"]


# ------------------------------------------------ (b) cachekit on the same bytes


def test_cachekit_opens_the_documented_entry():
    from cachekit._core import Keyring

    kr = Keyring(V["master_key"])
    assert kr.fingerprint == V["key_fp"].hex()
    assert kr.open(V["entry"], tenant="acme", cache_key=V["cache_key"]) == (1, V["plaintext"])
    assert kr.open_value(V["entry"], tenant="acme", cache_key=V["cache_key"]) == \
        {"ssn": "078-05-1120"}


def test_cachekit_writes_the_documented_entry_from_the_fixed_inputs():
    from cachekit import _core

    entry = _core._seal_entry({"ssn": "078-05-1120"}, dek=V["dek"], nonce=V["nonce"],
                              key_fp=V["key_fp"], wrapped_dek=V["wrapped_dek"], provider=1,
                              tenant="acme", cache_key=V["cache_key"])
    assert entry == V["entry"]


def test_the_documented_call_is_answered_from_the_entry():
    from cachekit import cache

    def ssn_of(customer_id):
        raise AssertionError("the entry should answer this call")

    ssn_of.__module__, ssn_of.__qualname__ = "billing", "ssn_of"
    f = cache.secure(master_key=V["master_key"].hex(), namespace="demo",
                     tenant_extractor=lambda customer_id: "acme")(ssn_of)
    f._poke(V["entry"], 42)  # as if read from a backend
    assert f(42) == {"ssn": "078-05-1120"}
    assert f.cache_stats()["hits"] == 1 and f.cache_stats()["decrypt_errors"] == 0
