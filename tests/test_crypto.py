"""Tests of AES-256-GCM and HKDF-SHA256 (src/core/ck_crypto.c, src/binding/py_crypto.c).

Known-answer tests run the C core against the NIST CAVP GCM vectors and the
RFC 5869 HKDF vectors shipped in the `cryptography-vectors` package; the
rest checks round trips, agreement with the `cryptography` package, that
any tampering raises DecryptionError, argument validation, that no message
leaks the key, and concurrent use with the GIL released.
"""

from __future__ import annotations

import array
import inspect
import os
import threading

import pytest

from cachekit import _core

seal = _core.aes256gcm_seal
open_ = _core.aes256gcm_open
hkdf = _core.hkdf_sha256
EncryptionError = _core.EncryptionError
DecryptionError = _core.DecryptionError

KEY_LEN, NONCE_LEN, TAG_LEN = 32, 12, 16
MiB = 1 << 20
NOGIL_MIN = 64 << 10  # py_crypto.c, CK_CRYPTO_NOGIL_MIN


@pytest.fixture(scope="module")
def vectors():
    return pytest.importorskip("cryptography_vectors")


@pytest.fixture(scope="module")
def AESGCM():
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    return aead.AESGCM


def key_nonce(seed: int = 0) -> tuple[bytes, bytes]:
    return bytes((seed + i) % 256 for i in range(KEY_LEN)), bytes(range(100, 100 + NONCE_LEN))


# --------------------------------------------------------------------------
# Vector file parsing
# --------------------------------------------------------------------------


def parse_cavp(text: str) -> list[dict[str, str]]:
    """Records of a NIST CAVP .rsp file: `[Name = v]` section headers apply
    to the records after them; a record starts at `Count = n` and holds
    `Name = hex` lines and, in decrypt files, a bare `FAIL` line."""
    records: list[dict[str, str]] = []
    section: dict[str, str] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            name, _, value = line[1:-1].partition("=")
            section[name.strip()] = value.strip()
            current = None
            continue
        if line == "FAIL":
            assert current is not None, "FAIL outside a record"
            current["FAIL"] = "1"
            continue
        name, sep, value = line.partition("=")
        assert sep, f"unparsed line {raw!r}"
        name, value = name.strip(), value.strip()
        if name == "Count":
            current = {**section, "Count": value}
            records.append(current)
        else:
            assert current is not None, f"{name} outside a record"
            current[name] = value
    return records


def gcm_cases(vectors, filename: str) -> list[dict[str, str]]:
    with vectors.open_vector_file(os.path.join("ciphers", "AES", "GCM", filename), "r") as f:
        records = parse_cavp(f.read())
    assert records, f"no records parsed from {filename}"
    # Our API takes only 96-bit nonces and 128-bit tags; check both the
    # section header and the actual hex lengths.
    return [
        r
        for r in records
        if r["IVlen"] == "96"
        and r["Taglen"] == "128"
        and len(r["IV"]) == 2 * NONCE_LEN
        and len(r["Tag"]) == 2 * TAG_LEN
    ]


def parse_hkdf(text: str) -> list[dict[str, str]]:
    """Records of the pyca KDF vector format: `COUNT = n` then `Name = v`."""
    records: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"unparsed line {raw!r}"
        name, value = name.strip(), value.strip()
        if name == "COUNT":
            records.append({})
        records[-1][name] = value
    return records


# --------------------------------------------------------------------------
# Known-answer tests
# --------------------------------------------------------------------------


def test_gcm_encrypt_vectors(vectors):
    cases = gcm_cases(vectors, "gcmEncryptExtIV256.rsp")
    checked = 0
    empty_both = 0
    for c in cases:
        key, iv = bytes.fromhex(c["Key"]), bytes.fromhex(c["IV"])
        pt, aad = bytes.fromhex(c["PT"]), bytes.fromhex(c["AAD"])
        expected = bytes.fromhex(c["CT"]) + bytes.fromhex(c["Tag"])
        where = f"PTlen={c['PTlen']} AADlen={c['AADlen']} Count={c['Count']}"
        assert seal(key, iv, pt, aad) == expected, where
        assert open_(key, iv, expected, aad) == pt, where
        checked += 1
        empty_both += not pt and not aad
    # 5 PT lengths x 5 AAD lengths x 15 cases for 96-bit IV, 128-bit tag.
    assert checked == 375
    assert empty_both == 15


def test_gcm_decrypt_vectors(vectors):
    cases = gcm_cases(vectors, "gcmDecrypt256.rsp")
    passed = failed = empty_both = 0
    for c in cases:
        key, iv = bytes.fromhex(c["Key"]), bytes.fromhex(c["IV"])
        aad = bytes.fromhex(c["AAD"])
        data = bytes.fromhex(c["CT"]) + bytes.fromhex(c["Tag"])
        where = f"PTlen={c['PTlen']} AADlen={c['AADlen']} Count={c['Count']}"
        if "FAIL" in c:
            with pytest.raises(DecryptionError):
                open_(key, iv, data, aad)
            failed += 1
        else:
            assert open_(key, iv, data, aad) == bytes.fromhex(c["PT"]), where
            passed += 1
        empty_both += not c["CT"] and not aad
    assert passed + failed == 375
    assert passed > 100 and failed > 100
    assert empty_both == 15


def test_hkdf_rfc5869_vectors(vectors):
    checked = 0
    for filename in ("rfc-5869-HKDF-SHA256.txt", "hkdf-generated.txt"):
        with vectors.open_vector_file(os.path.join("KDF", filename), "r") as f:
            records = parse_hkdf(f.read())
        for r in records:
            if r["Hash"] != "SHA-256":
                continue
            okm = hkdf(
                bytes.fromhex(r["IKM"]),
                salt=bytes.fromhex(r["salt"]),
                info=bytes.fromhex(r["info"]),
                length=int(r["L"]),
            )
            assert okm == bytes.fromhex(r["OKM"]), f"{filename} COUNT={r['COUNT']}"
            checked += 1
    # RFC 5869 A.1-A.3 (A.3 has empty salt and info) and pyca's 1200-byte one.
    assert checked == 4


# --------------------------------------------------------------------------
# Round trips and agreement with the cryptography package
# --------------------------------------------------------------------------

# Around the AES block and on both sides of the size where OpenSSL's x86-64
# GCM moves to its bulk (stitched AES-NI + GHASH) code.
SIZES = [0, 1, 15, 16, 17, 100, 287, 288, 289, 4097, MiB]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("aad", [b"", b"entry:v1"])
def test_round_trip(size, aad):
    key, nonce = key_nonce(size)
    pt = os.urandom(size)
    data = seal(key, nonce, pt, aad)
    assert len(data) == size + TAG_LEN
    assert data[:size] != pt or size == 0
    assert open_(key, nonce, data, aad) == pt
    assert open_(key, nonce, data, aad=aad) == pt


@pytest.mark.parametrize("size", SIZES)
def test_agrees_with_cryptography(AESGCM, size):
    key, nonce = os.urandom(KEY_LEN), os.urandom(NONCE_LEN)
    pt, aad = os.urandom(size), os.urandom(size % 50)
    theirs = AESGCM(key)
    ours = seal(key, nonce, pt, aad)
    assert ours == theirs.encrypt(nonce, pt, aad)
    assert theirs.decrypt(nonce, ours, aad) == pt
    assert open_(key, nonce, theirs.encrypt(nonce, pt, aad), aad) == pt


def test_accepts_any_buffer():
    key, nonce = key_nonce()
    pt = b"buffer protocol" * 5
    expected = seal(key, nonce, pt, b"aad")
    assert seal(bytearray(key), memoryview(nonce), array.array("B", pt), bytearray(b"aad")) == (
        expected
    )
    assert open_(memoryview(key), bytearray(nonce), bytearray(expected), memoryview(b"aad")) == pt
    # Writable inputs above the GIL-release threshold take the GIL-held path.
    big = bytearray(os.urandom(NOGIL_MIN * 2))
    assert open_(key, nonce, bytearray(seal(key, nonce, big)), bytearray()) == big


def test_returns_bytes_and_signatures():
    key, nonce = key_nonce()
    assert type(seal(key, nonce, bytearray(b"x"))) is bytes
    assert type(open_(key, nonce, seal(key, nonce, b""))) is bytes
    assert str(inspect.signature(seal)) == "(key, nonce, plaintext, /, aad=b'')"
    assert str(inspect.signature(open_)) == "(key, nonce, data, /, aad=b'')"
    assert str(inspect.signature(hkdf)) == "(ikm, /, salt=b'', info=b'', length=32)"


# --------------------------------------------------------------------------
# Tampering and wrong keys
# --------------------------------------------------------------------------


def flips(data: bytes):
    for i in range(len(data) * 8):
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        yield bytes(b)


def test_any_bit_flip_fails():
    key, nonce = key_nonce()
    pt, aad = b"twenty byte message!", b"aad-8byt"
    data = seal(key, nonce, pt, aad)
    flipped = 0
    for bad in flips(data):  # ciphertext and tag
        with pytest.raises(DecryptionError):
            open_(key, nonce, bad, aad)
        flipped += 1
    for bad in flips(nonce):
        with pytest.raises(DecryptionError):
            open_(key, bad, data, aad)
        flipped += 1
    for bad in flips(aad):
        with pytest.raises(DecryptionError):
            open_(key, nonce, data, bad)
        flipped += 1
    assert flipped == (len(data) + NONCE_LEN + len(aad)) * 8
    assert open_(key, nonce, data, aad) == pt  # nothing was stateful


def test_bit_flip_in_large_data_fails():
    # Large and read-only: this open runs with the GIL released.
    key, nonce = key_nonce()
    data = bytearray(seal(key, nonce, os.urandom(MiB)))
    for pos in (0, MiB // 2, MiB - 1, MiB + TAG_LEN - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x80
        with pytest.raises(DecryptionError):
            open_(key, nonce, bytes(bad))


def test_wrong_key_missing_or_extra_aad_fail():
    key, nonce = key_nonce()
    data = seal(key, nonce, b"secret", b"ctx")
    with pytest.raises(DecryptionError, match="authentication failed"):
        open_(bytes(KEY_LEN), nonce, data, b"ctx")
    with pytest.raises(DecryptionError):
        open_(key, nonce, data)
    with pytest.raises(DecryptionError):
        open_(key, nonce, seal(key, nonce, b"secret"), b"ctx")


@pytest.mark.parametrize("cut", [1, TAG_LEN - 1, TAG_LEN, TAG_LEN + 1])
def test_truncated_data_fails(cut):
    key, nonce = key_nonce()
    data = seal(key, nonce, b"some plaintext")
    with pytest.raises(DecryptionError):
        open_(key, nonce, data[:-cut])
    with pytest.raises(DecryptionError):
        open_(key, nonce, data[cut:])


@pytest.mark.parametrize("n", range(TAG_LEN))
def test_shorter_than_tag_fails(n):
    key, nonce = key_nonce()
    with pytest.raises(DecryptionError):
        open_(key, nonce, bytes(n))


def test_exception_hierarchy():
    assert issubclass(DecryptionError, EncryptionError)
    assert issubclass(EncryptionError, _core.SerializationError)


# --------------------------------------------------------------------------
# Argument validation and messages
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [seal, open_])
@pytest.mark.parametrize("n", [0, 16, 24, 31, 33, 64])
def test_key_length(fn, n):
    _, nonce = key_nonce()
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        fn(bytes(n), nonce, bytes(TAG_LEN))


@pytest.mark.parametrize("fn", [seal, open_])
@pytest.mark.parametrize("n", [0, 8, 11, 13, 16])
def test_nonce_length(fn, n):
    key, _ = key_nonce()
    with pytest.raises(ValueError, match="nonce must be 12 bytes"):
        fn(key, bytes(n), bytes(TAG_LEN))


def test_bad_arguments():
    key, nonce = key_nonce()
    with pytest.raises(TypeError):
        seal(key, nonce)
    with pytest.raises(TypeError):
        seal(key, nonce, b"", b"", b"")
    with pytest.raises(TypeError):
        seal(key, nonce, "text")
    with pytest.raises(TypeError):
        seal(key, nonce, b"", nonce=b"")
    with pytest.raises(TypeError):
        seal(key, nonce, b"", b"x", aad=b"x")
    with pytest.raises(TypeError):
        open_(key, nonce, None)
    with pytest.raises((TypeError, BufferError)):  # not contiguous
        seal(key, nonce, memoryview(b"abcdef")[::2])


def _messages(exc: BaseException) -> str:
    return " ".join([str(exc), repr(exc), *map(str, exc.args)])


def test_errors_never_contain_the_key():
    # A distinctive key: printable bytes, so a raw or decoded leak would
    # show up in the message text as well as a hex one.
    key = b"K3yMaterial-ShouldNeverLeak!!!!!"
    assert len(key) == KEY_LEN
    _, nonce = key_nonce()
    data = seal(key, nonce, b"payload")
    calls = [
        lambda: seal(key[:-1], nonce, b"x"),
        lambda: open_(key + b"!", nonce, data),
        lambda: open_(key, nonce, data[:-1]),
        lambda: open_(key, nonce, data[:5]),
        lambda: open_(key, bytes(NONCE_LEN), data),
        lambda: hkdf(key, length=0),
        lambda: hkdf(key, length=9000),
    ]
    needles = [key.hex(), key.hex().upper(), key.decode(), repr(key), key[:-1].hex(),
               key[:8].decode(), key[:8].hex()]
    for call in calls:
        with pytest.raises((ValueError, DecryptionError)) as info:
            call()
        text = _messages(info.value)
        for needle in needles:
            assert needle not in text


# --------------------------------------------------------------------------
# HKDF
# --------------------------------------------------------------------------


def test_hkdf_agrees_with_cryptography():
    hashes = pytest.importorskip("cryptography.hazmat.primitives.hashes")
    kdf_hkdf = pytest.importorskip("cryptography.hazmat.primitives.kdf.hkdf")
    for length in (1, 16, 32, 33, 64, 255 * 32):
        for salt in (b"", os.urandom(16), os.urandom(100)):
            ikm, info = os.urandom(length % 70 + 1), os.urandom(length % 9)
            expected = kdf_hkdf.HKDF(
                algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info
            ).derive(ikm)
            assert hkdf(ikm, salt, info, length) == expected
            assert hkdf(bytearray(ikm), salt=memoryview(salt), info=info, length=length) == (
                expected
            )


def test_hkdf_defaults_and_limits():
    assert len(hkdf(b"k")) == 32
    assert hkdf(b"k") == hkdf(b"k", b"", b"", 32) == hkdf(b"k", length=32)
    assert hkdf(b"k", info=b"a") != hkdf(b"k", info=b"b")
    assert len(hkdf(b"k", length=255 * 32)) == 255 * 32
    for bad in (0, -1, 255 * 32 + 1):
        with pytest.raises(ValueError, match="length"):
            hkdf(b"k", length=bad)
    with pytest.raises(ValueError, match="ikm"):
        hkdf(b"")
    with pytest.raises(TypeError):
        hkdf(b"k", length=32.0)
    with pytest.raises(OverflowError):
        hkdf(b"k", length=1 << 80)
    with pytest.raises(TypeError):
        hkdf(b"k", digest="sha256")
    with pytest.raises(TypeError):
        hkdf(b"k", b"", salt=b"")


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------


def test_concurrent_seal_open():
    """Threads seal and open 64 KiB+ values at once: bytes inputs are
    read-only, so the GIL is released inside the C core."""
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        try:
            key, nonce = key_nonce(seed)
            rnd = os.urandom(NOGIL_MIN + 4096 * seed)
            start.wait()
            for i in range(20):
                aad = f"{seed}:{i}".encode()
                data = seal(key, nonce, rnd, aad)
                assert open_(key, nonce, data, aad) == rnd
                with pytest.raises(DecryptionError):
                    open_(key, nonce, data, aad + b"!")
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

