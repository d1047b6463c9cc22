"""The AES-256-GCM implementation follows OpenSSL's default properties when
a Keyring is created (docs/security.md, "Which code does the cryptography").

No FIPS provider is installed on the test machines, so enabling FIPS
properties must make Keyring creation refuse with a clear error rather than
go on with the default provider's cipher. Each scenario runs in a fresh
interpreter: the property changes are process-wide and would also break
hashlib for the rest of the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = textwrap.dedent("""
    import ctypes
    from cachekit import _core
    from cachekit._core import EncryptionError, Keyring

    def libcrypto():
        # The libcrypto the extension is linked against, already loaded.
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libcrypto.so" in path:
                    return ctypes.CDLL(path)
        raise SystemExit("libcrypto not mapped")

    lib = libcrypto()
    lib.EVP_default_properties_enable_fips.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.EVP_set_default_properties.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.OSSL_PROVIDER_available.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    KEY = bytes(range(32))
""")


def run(body: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fips_properties_enabled_later_are_followed_or_refused():
    out = run("""
        before = Keyring(KEY)
        entry = before.seal(b"v", cache_key=b"k")
        assert _core._aead_provider() == "default"
        assert lib.EVP_default_properties_enable_fips(None, 1) == 1
        if lib.OSSL_PROVIDER_available(None, b"fips"):
            Keyring(KEY)  # a FIPS provider is there: the keyring uses it
            assert _core._aead_provider() == "fips"
            print("refetched")
        else:
            try:
                Keyring(KEY)
            except EncryptionError as exc:
                assert "default properties" in str(exc), exc
                print("refused")
            else:
                raise SystemExit("a keyring was created under fips=yes without FIPS AES-GCM")
        assert lib.EVP_default_properties_enable_fips(None, 0) == 1
        after = Keyring(KEY)
        assert after.open(entry, cache_key=b"k") == (1, b"v")
    """)
    assert out.strip() in ("refused", "refetched")


def test_a_changed_default_property_query_is_rechecked():
    run("""
        Keyring(KEY)
        # No loaded provider is called "legacy" and offers AES-256-GCM.
        assert lib.EVP_set_default_properties(None, b"provider=legacy") == 1
        try:
            Keyring(KEY)
        except EncryptionError as exc:
            assert "AES-256-GCM fetch" in str(exc), exc
        else:
            raise SystemExit("keyring created under an unsatisfiable property query")
        assert lib.EVP_set_default_properties(None, b"provider=default") == 1
        Keyring(KEY)
        assert _core._aead_provider() == "default"
    """)


def test_keys_made_before_a_switch_keep_working_after_it():
    # force=True resolves a second implementation, as a provider switch
    # does: keys set up under the first keep calling into it.
    run("""
        old = Keyring(KEY)
        entry = old.seal(b"v", cache_key=b"k")
        assert _core._aead_provider(force=True) == "default"
        new = Keyring(KEY)
        assert old.open(entry, cache_key=b"k") == (1, b"v")
        assert new.open(entry, cache_key=b"k") == (1, b"v")
        assert old.open(new.seal(b"w", cache_key=b"k"), cache_key=b"k") == (1, b"w")
        assert new.open(old.seal(b"x", cache_key=b"k"), cache_key=b"k") == (1, b"x")
    """)
