"""Build the C Keyring for @cache.secure from an EncryptionConfig.

Keys are decoded from hex into bytearrays, copied into C memory by the
Keyring, and the bytearrays are zeroed straight after, so the raw key bytes
do not linger in Python objects we control. (The hex text itself lives on in
the SecretStr and, when it came from there, in ``os.environ``.)

Keyrings are shared between functions with the same keys, and reset in a
forked child (the C side also notices the fork on its own, through a
pthread_atfork handler).
"""

from __future__ import annotations

import os
import threading

from cachekit._core import Keyring
from cachekit.config.encryption import EncryptionConfig, decode_master_key, wipe
from cachekit.config.settings import CachekitConfig
from cachekit.exceptions import ConfigurationError

_lock = threading.Lock()
_keyrings: dict[tuple[object, ...], Keyring] = {}


def keyring_for(enc: EncryptionConfig, settings: CachekitConfig) -> Keyring:
    if enc.key_provider is not None:
        return _provider_keyring(enc)
    master = enc.master_key if enc.master_key is not None else settings.master_key
    previous = enc.previous_master_keys or settings.previous_master_keys
    if not enc.key_rotation_enabled:
        previous = ()
    if len(previous) > 8:
        raise ConfigurationError("at most 8 previous master keys (CACHEKIT_MASTER_KEY_ROTATION)")
    raw_master = decode_master_key(master, "CACHEKIT_MASTER_KEY")
    raw_previous: list[bytearray] = []
    try:
        for i, key in enumerate(previous):
            raw_previous.append(decode_master_key(key, f"CACHEKIT_MASTER_KEY_ROTATION key {i + 1}"))
        keyring = Keyring(
            raw_master,
            raw_previous,
            dek_max_age=enc.dek_max_age,
            dek_max_messages=enc.dek_max_messages,
            dek_max_bytes=enc.dek_max_bytes,
        )
    finally:
        wipe(raw_master)
        for raw in raw_previous:
            wipe(raw)
    identity = (keyring.fingerprint, keyring.previous_fingerprints, enc.dek_max_age,
                enc.dek_max_messages, enc.dek_max_bytes)
    with _lock:
        shared = _keyrings.get(identity)
        if shared is not None:
            return shared
        _keyrings[identity] = keyring
    # Shared keyrings live for the process, so a strong reference is fine.
    os.register_at_fork(after_in_child=keyring.reset)
    return keyring


def _provider_keyring(enc: EncryptionConfig) -> Keyring:
    """A keyring fed by an external provider, shared per provider object."""
    if enc.master_key is not None:
        raise ConfigurationError("give either master_key or key_provider, not both")
    identity = ("provider", id(enc.key_provider), enc.dek_max_age, enc.dek_max_messages,
                enc.dek_max_bytes)
    with _lock:
        shared = _keyrings.get(identity)
        if shared is not None:
            return shared
        try:
            keyring = Keyring(
                provider=enc.key_provider,
                dek_max_age=enc.dek_max_age,
                dek_max_messages=enc.dek_max_messages,
                dek_max_bytes=enc.dek_max_bytes,
            )
        except ValueError as exc:
            raise ConfigurationError(f"key_provider: {exc}") from None
        _keyrings[identity] = keyring
    os.register_at_fork(after_in_child=keyring.reset)
    return keyring
