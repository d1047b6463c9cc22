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
from collections.abc import Callable

from cachekit._core import Keyring
from cachekit.config.encryption import EncryptionConfig, decode_master_key, wipe
from cachekit.config.secret import SecretStr
from cachekit.config.settings import CachekitConfig
from cachekit.exceptions import ConfigurationError

_lock = threading.Lock()
_keyrings: dict[tuple[object, ...], Keyring] = {}


def keyring_for(enc: EncryptionConfig, settings: CachekitConfig) -> Keyring:
    if enc.key_provider is not None:
        return _provider_keyring(enc)
    # Errors name where the key came from: the argument or the variable.
    master: SecretStr | None
    if enc.master_key is not None:
        master, master_source = enc.master_key, "master_key"
    else:
        master, master_source = settings.master_key, "CACHEKIT_MASTER_KEY"
    if enc.previous_master_keys:
        previous, previous_source = enc.previous_master_keys, "previous_master_keys[{}]"
    else:
        previous = settings.previous_master_keys
        previous_source = "CACHEKIT_PREVIOUS_MASTER_KEYS key {}"
    if not enc.key_rotation_enabled:
        previous = ()
    if len(previous) > 8:
        where = "previous_master_keys" if enc.previous_master_keys else "CACHEKIT_PREVIOUS_MASTER_KEYS"
        raise ConfigurationError(f"at most 8 previous master keys, got {len(previous)} ({where})")
    raw_master = decode_master_key(master, master_source)
    raw_previous: list[bytearray] = []
    try:
        for i, key in enumerate(previous):
            number = i if enc.previous_master_keys else i + 1
            raw_previous.append(decode_master_key(key, previous_source.format(number)))
        keyring = Keyring(
            raw_master,
            raw_previous,
            dek_max_age=enc.dek_max_age,
            dek_max_messages=enc.dek_max_messages,
            dek_max_bytes=enc.dek_max_bytes,
            compress_min=enc.compress_min,
        )
    finally:
        wipe(raw_master)
        for raw in raw_previous:
            wipe(raw)
    return _shared((keyring.fingerprint, keyring.previous_fingerprints, *_limits(enc)),
                   lambda: keyring)


def _limits(enc: EncryptionConfig) -> tuple[float, int, int, int]:
    return enc.dek_max_age, enc.dek_max_messages, enc.dek_max_bytes, enc.compress_min


def _shared(identity: tuple[object, ...], build: Callable[[], Keyring]) -> Keyring:
    """The keyring registered under identity, or build() registered now and
    reset in forked children. Shared keyrings live for the process."""
    with _lock:
        keyring = _keyrings.get(identity)
        if keyring is not None:
            return keyring
        keyring = _keyrings[identity] = build()
    os.register_at_fork(after_in_child=keyring.reset)
    return keyring


def _provider_keyring(enc: EncryptionConfig) -> Keyring:
    """A keyring fed by an external provider, shared per provider object."""
    if enc.master_key is not None:
        raise ConfigurationError("give either master_key or key_provider, not both")

    def build() -> Keyring:
        try:
            return Keyring(provider=enc.key_provider, dek_max_age=enc.dek_max_age,
                           dek_max_messages=enc.dek_max_messages, dek_max_bytes=enc.dek_max_bytes,
                           compress_min=enc.compress_min)
        except ValueError as exc:
            raise ConfigurationError(f"key_provider: {exc}") from None

    return _shared(("provider", id(enc.key_provider), *_limits(enc)), build)
