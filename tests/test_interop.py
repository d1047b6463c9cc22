"""interop/v1 (cachekit-io/protocol spec/interop-mode.md): every published
vector in tests/vectors/protocol/interop-mode.json (source in SOURCE.md),
the strict reader, the decorator on a real redis-server, and a cross-read
with the reference library cachekit 0.24.1 when its venv exists."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cachekit import _core, cache
from cachekit.backends.redis import RedisBackend
from cachekit.exceptions import ConfigurationError
from cachekit import interop as I

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "protocol" / "interop-mode.json").read_text("utf-8")
)
KEY_HEX = "61" * 32


def untag(x):
    """The file's tagged-JSON inputs ($set, $bytes, ...) as Python values."""
    if isinstance(x, dict) and len(x) == 1 and next(iter(x)).startswith("$"):
        ((tag, v),) = x.items()
        return {
            "$set": lambda v: {untag(e) for e in v},
            "$bytes": bytes.fromhex,
            "$datetime": dt.datetime.fromisoformat,
            "$uuid": uuid.UUID,
            "$float": float,
            "$int": int,
        }[tag](v)
    if isinstance(x, dict):
        return {k: untag(v) for k, v in x.items()}
    if isinstance(x, list):
        return [untag(v) for v in x]
    return x


# --------------------------------------------------------------------------
# Published vectors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("v", VECTORS["key_vectors"], ids=lambda v: v["name"])
def test_key_vector(v):
    args = untag(v["args"])
    assert I.canonical_args_bytes(args).hex() == v["canonical_args_hex"]
    assert I.args_hash(args) == v["args_hash"]
    assert I.generate_interop_key(v["namespace"], v["operation"], args) == v["expected_key"]
    # The hash is standard BLAKE2b-256 of those bytes (independent check of ours).
    digest = hashlib.blake2b(bytes.fromhex(v["canonical_args_hex"]), digest_size=32).hexdigest()
    assert digest == v["args_hash"]


def test_key_vector_counts():
    assert len(VECTORS["key_vectors"]) == 33
    assert len(VECTORS["error_vectors"]) >= 8


@pytest.mark.parametrize("v", VECTORS["value_vectors"], ids=lambda v: v["name"])
def test_value_vector(v):
    value = untag(v["value"])
    data = I.encode_interop_value(value)
    assert data.hex() == v["canonical_msgpack_hex"]
    back = I.decode_interop_value(data)
    if v["name"] == "datetime_sentinel_value":
        assert back == dt.datetime.fromisoformat(value["value"])
        assert I.encode_interop_value(back) == data
    else:
        assert back == value and type(back) is type(value)


@pytest.mark.parametrize("v", VECTORS["error_vectors"], ids=lambda v: v["name"])
def test_error_vector(v):
    with pytest.raises(I.InteropError):
        I.generate_interop_key(v.get("namespace", "t"), v.get("operation", "op"), untag(v["args"]))


@pytest.mark.parametrize("v", VECTORS["aad_vectors"], ids=lambda v: v["name"])
def test_aad_vector(v):
    assert (v["format"], v["compressed"]) == ("msgpack", False)
    assert _core.interop_aad(v["tenant_id"], v["cache_key"]).hex() == v["aad_hex"]


@pytest.mark.parametrize("v", VECTORS["encryption_vectors"], ids=lambda v: v["name"])
def test_encryption_vector(v):
    master = bytes.fromhex(v["master_key_hex"])
    pt = bytes.fromhex(v["plaintext_hex"])
    assert _core.interop_key_fingerprint(master, v["tenant_id"]).hex() == v[
        "derived_key_fingerprint_hex"
    ]
    sealed = _core.interop_seal(master, v["tenant_id"], v["cache_key"], pt,
                                bytes.fromhex(v["nonce_hex"]))
    assert sealed.hex() == v["ciphertext_hex"]
    assert _core.interop_open([master], v["tenant_id"], v["cache_key"], sealed) == pt
    assert I.decode_interop_value(pt) == {"name": "alice", "age": 30}
    # Sequential key attempts: a wrong current key, then the right previous one.
    assert _core.interop_open([b"z" * 32, master], v["tenant_id"], v["cache_key"], sealed) == pt
    # Bound to tenant and key (AAD): anything else fails.
    for tenant, key in ((v["tenant_id"], v["cache_key"] + "x"), ("other", v["cache_key"])):
        with pytest.raises(ValueError):
            _core.interop_open([master], tenant, key, sealed)


def test_random_nonce_seal_opens_with_an_independent_aes_gcm():
    """Our seal with a fresh nonce, opened by `cryptography` with the
    protocol's HKDF derivation written out here."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    master, tenant, key = b"k" * 32, "acme", "users:get_user:" + "0" * 64
    salt = b"cachekit_v1_" + bytes([10]) + b"encryption" + len(tenant).to_bytes(2, "big") + b"acme"
    dk = HKDF(hashes.SHA256(), 32, salt, b"encryption").derive(master)
    a, b = (_core.interop_seal(master, tenant, key, b"\x01") for _ in range(2))
    assert a[:12] != b[:12]  # fresh nonces
    assert AESGCM(dk).decrypt(a[:12], a[12:], _core.interop_aad(tenant, key)) == b"\x01"


def test_blake2b_matches_hashlib_across_block_boundaries():
    rng = random.Random(7)
    for n in [*range(0, 260), 1000, 4096, 4097]:
        data = rng.randbytes(n)
        assert _core.interop_blake2b_256(data) == hashlib.blake2b(data, digest_size=32).digest()


# --------------------------------------------------------------------------
# Canonicalization beyond the vectors
# --------------------------------------------------------------------------


def test_args_profile_rules():
    aware = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert I.args_hash([2.0]) == I.args_hash([2])
    assert I.args_hash([aware]) == I.args_hash([1704067200])
    assert I.args_hash([(1, 2)]) == I.args_hash([[1, 2]])
    assert I.args_hash([frozenset({1})]) == I.args_hash([{1}])
    assert I.args_hash([True]) != I.args_hash([1])
    assert I.args_hash(["1"]) != I.args_hash([1])
    assert I.canonical_args_bytes([b""]) == b"\x91\xc4\x00"
    assert I.canonical_args_bytes([""]) == b"\x91\xa0"
    with pytest.raises(I.InteropError):
        I.canonical_args_bytes([{1: 2}])  # non-string map key
    with pytest.raises(I.InteropError):
        I.canonical_args_bytes([dt.date(2024, 1, 1)])
    with pytest.raises(I.InteropError):
        I.canonical_args_bytes(["\ud800"])  # lone surrogate: never replacement-encoded
    with pytest.raises(I.InteropError):
        I.canonical_args_bytes([object()])
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(I.InteropError):
        I.canonical_args_bytes([deep])
    with pytest.raises(I.InteropError):
        I.canonical_args_bytes("abc")  # type: ignore[arg-type]


def test_value_profile_rules():
    assert I.encode_interop_value(2.0) == b"\xcb\x40\x00\x00\x00\x00\x00\x00\x00"
    assert I.decode_interop_value(I.encode_interop_value((1, 2))) == [1, 2]
    for v in (dt.date(2024, 2, 3), dt.time(1, 2, 3), dt.datetime(2024, 1, 1, 5)):
        assert I.decode_interop_value(I.encode_interop_value(v)) == v
    for bad in ({1}, uuid.uuid4(), float("nan"), float("inf"), {1: 2}, object(), 2**64):
        with pytest.raises(I.InteropError):
            I.encode_interop_value(bad)
    at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert I.decode_interop_value(memoryview(I.encode_interop_value([at]))) == [at]
    # A map that only looks like a sentinel stays a map.
    odd = {"__date__": True, "value": "not a date"}
    assert I.decode_interop_value(I.encode_interop_value(odd)) == odd


def test_bind_flat_args():
    import inspect

    def f(user_id, include_profile=False, *rest, **extra):
        return None

    sig = inspect.signature(f)
    assert I.bind_flat_args(sig, (42,), {}) == [42, False, [], {}]
    assert I.bind_flat_args(sig, (), {"user_id": 42}) == [42, False, [], {}]
    assert I.bind_flat_args(sig, (1, True, 3), {"x": 1}) == [1, True, [3], {"x": 1}]
    with pytest.raises(I.InteropError):
        I.bind_flat_args(sig, (), {})


# --------------------------------------------------------------------------
# Strict reader
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hexdata",
    [
        "",              # empty
        "c1",            # never-used marker
        "0102",          # trailing bytes
        "434b0101",      # a Python CK frame prefix: fixint 67 plus trailing bytes
        "c70101ff",      # ext 8
        "d40100",        # fixext 1
        "d6ff00000000",  # the timestamp extension
        "92",            # truncated array
        "a5616263",      # truncated str
        "c6ffffffff",    # bin32 claiming 4 GiB
        "ddffffffff",    # array32 claiming 4 G elements
        "81" * 70 + "a0" * 1,  # too deep
        "82a161" + "01" + "a161" + "02" + "00",  # trailing after a map
    ],
)
def test_reader_refuses(hexdata):
    with pytest.raises(I.InteropDecodeError):
        I.decode_interop_value(bytes.fromhex(hexdata))


def test_reader_accepts_non_canonical_forms():
    # Readers MUST accept any well-formed document: padded widths, float32.
    assert I.decode_interop_value(bytes.fromhex("cd0005")) == 5
    assert I.decode_interop_value(bytes.fromhex("ca3fc00000")) == 1.5
    assert I.decode_interop_value(bytes.fromhex("dc000101")) == [1]
    assert I.decode_interop_value(bytes.fromhex("d90161")) == "a"


def test_reader_fuzz_never_crashes():
    rng = random.Random(1)
    seeds = [bytes.fromhex(v["canonical_args_hex"]) for v in VECTORS["key_vectors"]]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randint(0, 2)
            if op == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op == 1 and data:
                del data[rng.randrange(len(data)):]
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        try:
            I.decode_interop_value(bytes(data))
        except I.InteropDecodeError:
            pass


# --------------------------------------------------------------------------
# Decorator, on a real redis-server
# --------------------------------------------------------------------------


@pytest.fixture
def backend(redis_server):
    return RedisBackend(redis_server.url)


def _ns(request) -> str:
    return "t-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]


def test_decorator_plain_round_trip(backend, redis_server, request):
    ns = _ns(request)
    calls = []

    @cache(interop="get_user", namespace=ns, ttl=60, backend=backend)
    def get_user(user_id: int, include_profile: bool = False):
        calls.append(user_id)
        return {"id": user_id, "score": 2.5, "tags": ["a"]}

    assert get_user(42) == {"id": 42, "score": 2.5, "tags": ["a"]}
    assert get_user(user_id=42) == get_user(42, include_profile=False) == get_user(42)
    assert calls == [42]
    key = I.generate_interop_key(ns, "get_user", [42, False])
    assert get_user.cache_key(42) == key
    # What is stored is exactly the plain canonical MessagePack of the result.
    assert backend.get(key) == I.encode_interop_value({"id": 42, "score": 2.5, "tags": ["a"]})
    ttl = int(redis_server.command(b"TTL", key.encode()).strip()[1:])
    assert 0 < ttl <= 60
    assert get_user.interop_stats() == {"hits": 3, "misses": 1, "invalid": 0, "errors": 0}
    get_user.invalidate_cache(42)
    assert backend.get(key) is None


def test_decorator_reads_foreign_and_garbage_as_counted_miss(backend, request):
    ns = _ns(request)

    @cache(interop="op", namespace=ns, backend=backend)
    def f(x):
        return x * 2

    key = f.cache_key(5)
    backend.set(key, bytes.fromhex("8182"))  # truncated map: a miss, then overwritten
    assert f(5) == 10
    assert f.interop_stats()["invalid"] == 1
    assert backend.get(key) == b"\x0a"
    backend.set(key, b"\x07")  # another SDK wrote 7 for this key: we read it
    assert f(5) == 7


def test_decorator_secure_round_trip_and_tamper(backend, request):
    ns = _ns(request)
    calls = []

    @cache.secure(interop="get_ssn", namespace=ns, master_key=KEY_HEX, backend=backend)
    def get_ssn(user_id):
        calls.append(user_id)
        return "078-05-1120"

    assert get_ssn(1) == get_ssn(1) == "078-05-1120"
    assert calls == [1]
    key = get_ssn.cache_key(1)
    stored = backend.get(key)
    assert b"078-05" not in stored
    # Independent decryption with the protocol's derivation (vector key and tenant "default").
    pt = _core.interop_open([bytes.fromhex(KEY_HEX)], "default", key, stored)
    assert I.decode_interop_value(pt) == "078-05-1120"
    tampered = bytearray(stored)
    tampered[-1] ^= 1
    backend.set(key, bytes(tampered))
    assert get_ssn(1) == "078-05-1120" and calls == [1, 1]
    assert get_ssn.interop_stats()["invalid"] == 1
    backend.set(key, I.encode_interop_value("plaintext"))  # a plaintext entry is refused
    assert get_ssn(1) == "078-05-1120" and calls == [1, 1, 1]


def test_decorator_secure_rotation_reads_previous_key(backend, request):
    ns = _ns(request)
    old, new = "0b" * 32, "0c" * 32

    @cache.secure(interop="op", namespace=ns, master_key=old, backend=backend)
    def before(x):
        return [x]

    @cache.secure(interop="op", namespace=ns, master_key=new, previous_master_keys=[old],
                  backend=backend)
    def after(x):
        raise AssertionError("must be served from the entry written under the old key")

    assert before(3) == [3]
    assert after(3) == [3]


def test_backend_down_runs_the_function():
    from redis_server import free_port

    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}")

    @cache(interop="op", namespace="down", backend=backend)
    def f(x):
        return x + 1

    assert f(1) == 2 and f(1) == 2
    assert f.interop_stats()["errors"] >= 2


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"interop": "get_user"}, "namespace"),
        ({"interop": "Get_User", "namespace": "users"}, "operation"),
        ({"interop": "get_user", "namespace": "users\n"}, "namespace"),
        ({"interop": True, "namespace": "users"}, 'interop="get_user"'),
        ({"interop": "get_user", "namespace": "ns"}, "reserved"),
        ({"interop": "get_user", "namespace": "users", "backend": None}, "backend"),
        ({"interop": "get_user", "namespace": "users", "serializer": "orjson"}, "serializer"),
        ({"interop": "get_user", "namespace": "users", "refresh_ttl_on_get": True, "ttl": 5},
         "refresh_ttl_on_get"),
    ],
)
def test_decoration_errors(kwargs, needle, backend):
    kwargs.setdefault("backend", backend)
    with pytest.raises(ConfigurationError, match=needle.replace("(", r"\(")):
        @cache(**kwargs)
        def f(user_id):
            return user_id


def test_decoration_errors_secure_and_local_and_async(backend):
    with pytest.raises(ConfigurationError, match="tenant"):
        @cache.secure(interop="op", namespace="users", master_key=KEY_HEX, backend=backend,
                      tenant_extractor=lambda *a, **k: "x")
        def f(x):
            return x
    with pytest.raises(ConfigurationError, match="backend"):
        @cache.local(interop="op", namespace="users")
        def g(x):
            return x
    with pytest.raises(ConfigurationError, match="async"):
        @cache(interop="op", namespace="users", backend=backend)
        async def h(x):
            return x
    assert asyncio  # imported for the coroutine check above


def test_out_of_model_argument_and_result_raise(backend, request):
    ns = _ns(request)

    @cache(interop="op", namespace=ns, backend=backend)
    def f(x):
        return object() if x == "obj" else x

    with pytest.raises(I.InteropError):
        f(object())
    with pytest.raises(I.InteropError):
        f("obj")


# --------------------------------------------------------------------------
# Cross-check with the reference library (cachekit 0.24.1, its own venv)
# --------------------------------------------------------------------------

REF_PYTHON = os.environ.get("REFERENCE_PYTHON", "/tmp/ref024/bin/python")

REF_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from cachekit import cache
    from cachekit.backends.redis import RedisBackend
    mode, ns, user_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls = []
    kw = dict(interop="get_user", namespace=ns, ttl=300, backend=RedisBackend())
    deco = cache.secure(master_key="%s", **kw) if mode == "secure" else cache(**kw)
    @deco
    def get_user(user_id: int, include_profile: bool = False):
        calls.append(user_id)
        return {"id": user_id, "by": "reference", "score": 2.5}
    print(json.dumps({"result": get_user(user_id), "calls": len(calls)}))
    """
) % KEY_HEX


def _reference(redis_url: str, *argv: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEKIT_", "PYTHON"))}
    env["REDIS_URL"] = redis_url
    out = subprocess.run([REF_PYTHON, "-c", REF_SCRIPT, *argv], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _create_reference_venv() -> bool:
    """python3 -m venv + pip install cachekit==0.24.1 where REF_PYTHON says;
    False (the test skips) when that fails or takes over four minutes."""
    venv = Path(REF_PYTHON).parent.parent
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True, timeout=120)
        subprocess.run([REF_PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "cachekit==0.24.1"], check=True, capture_output=True, timeout=240)
    except (OSError, subprocess.SubprocessError):
        return False
    return Path(REF_PYTHON).exists()


@pytest.fixture(scope="module")
def reference_python():
    if not Path(REF_PYTHON).exists() and not _create_reference_venv():
        pytest.skip(f"could not create the reference venv at {REF_PYTHON} (python3 -m venv "
                    "/tmp/ref024 && /tmp/ref024/bin/pip install cachekit==0.24.1)")
    probe = subprocess.run([REF_PYTHON, "-c", "import cachekit.interop"], capture_output=True,
                           timeout=60)
    if probe.returncode != 0:
        pytest.skip("the reference venv has no cachekit.interop")
    return REF_PYTHON


@pytest.mark.parametrize("mode", ["plain", "secure"])
def test_cross_sdk_with_reference(reference_python, redis_server, mode, request):
    ns = _ns(request)
    backend = RedisBackend(redis_server.url)
    calls = []
    deco_kw = dict(interop="get_user", namespace=ns, ttl=300, backend=backend)
    deco = cache.secure(master_key=KEY_HEX, **deco_kw) if mode == "secure" else cache(**deco_kw)

    @deco
    def get_user(user_id: int, include_profile: bool = False):
        calls.append(user_id)
        return {"id": user_id, "by": "ours", "score": 2.5}

    # Reference writes, we read.
    written = _reference(redis_server.url, mode, ns, "42")
    assert written == {"result": {"id": 42, "by": "reference", "score": 2.5}, "calls": 1}
    assert get_user(42) == {"id": 42, "by": "reference", "score": 2.5} and calls == []
    # We write, the reference reads.
    assert get_user(7) == {"id": 7, "by": "ours", "score": 2.5} and calls == [7]
    read = _reference(redis_server.url, mode, ns, "7")
    assert read == {"result": {"id": 7, "by": "ours", "score": 2.5}, "calls": 0}


def test_no_reference_leaks_on_success_and_error_paths():
    at = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    key_obj, inner, elem = "k", [1, 2.5], "s"
    args = [42, {key_obj: inner, "set": {elem, 1}}, at]
    bad = [{key_obj: [inner, object()]}]
    before = [sys.getrefcount(o) for o in (key_obj, inner, elem, at)]
    for _ in range(1000):
        I.generate_interop_key("t", "op", args)
        I.decode_interop_value(I.encode_interop_value({key_obj: inner, "at": at}))
        with pytest.raises(I.InteropError):
            I.canonical_args_bytes(bad)
    assert [sys.getrefcount(o) for o in (key_obj, inner, elem, at)] == before
