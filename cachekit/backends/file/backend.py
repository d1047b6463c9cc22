"""FileBackend: the C file store (``cachekit._core.FileStore``, see
src/core/ck_file.c) behind the backend methods.

Entries are files named by a 128-bit hash of the key name, written
atomically (temp file + rename), checksummed, with their TTL in the record
header, bounded by size and count with LRU eviction. The file store
releases the GIL for its I/O. Under ``@cache.secure`` the key names are
the decorator's MACs and the values its ciphertext, so nothing written is
plaintext. I/O failures raise BackendError; a corrupt, truncated or
foreign entry is a miss (counted in ``stats()["corrupt"]``, and deleted).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from cachekit._core import FileStore
from cachekit.backends.file.config import FileBackendConfig
from cachekit.exceptions import BackendError, BackendErrorType, ConfigurationError

_MB = 1024 * 1024


def _ttl_ms(ttl: float | None) -> int:
    if ttl is None or ttl <= 0:
        return 0
    return max(1, int(ttl * 1000))


class _Buffer:
    """get_buffer()'s handle: ``data`` is a memoryview of the value."""

    def __init__(self, value: bytes) -> None:
        self.data: memoryview | None = memoryview(value)

    def close(self) -> None:
        if self.data is not None:
            self.data.release()
            self.data = None

    def __enter__(self) -> _Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileBackend:
    """A directory of cache entries (see FileBackendConfig for the options).

    ``FileBackend(FileBackendConfig(cache_dir="/var/cache/app"))``; with no
    config, ``FileBackendConfig.from_env()``.
    """

    def __init__(self, config: FileBackendConfig | None = None) -> None:
        if config is None:
            config = FileBackendConfig.from_env()
        if not isinstance(config, FileBackendConfig):
            raise ConfigurationError(
                f"FileBackend takes a FileBackendConfig, not {type(config).__name__}"
            )
        self.config = config
        try:
            self._store = FileStore(
                config.cache_dir, config.max_size_mb * _MB, config.max_entry_count,
                config.max_value_mb * _MB, config.permissions, config.dir_permissions,
                config.fsync,
            )
        except OSError as exc:
            raise ConfigurationError(f"FileBackend cannot use cache_dir: {exc}") from None

    def _fail(self, operation: str, exc: OSError) -> BackendError:
        return BackendError(
            f"file backend {operation} failed: {exc}", BackendErrorType.TRANSIENT,
            operation=operation,
        )

    def get(self, key: str) -> bytes | None:
        try:
            return self._store.get(key)
        except OSError as exc:
            raise self._fail("get", exc) from None

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        """Store value; one larger than max_value_mb is counted
        (``stats()["too_large"]``) and not stored."""
        try:
            self._store.set(key, value, _ttl_ms(ttl))
        except OSError as exc:
            raise self._fail("set", exc) from None

    def delete(self, key: str) -> bool:
        try:
            return bool(self._store.delete(key))
        except OSError as exc:
            raise self._fail("delete", exc) from None

    def exists(self, key: str) -> bool:
        return self.get(key) is not None

    def clear_prefix(self, prefix: str) -> int:
        """Remove the entries whose key names start with prefix."""
        try:
            return int(self._store.clear_prefix(prefix))
        except OSError as exc:
            raise self._fail("clear", exc) from None

    def clear(self) -> int:
        """Remove every entry."""
        return self.clear_prefix("")

    def get_ttl(self, key: str) -> int | None:
        """Whole seconds left (rounded up), or None when absent or never expiring."""
        try:
            entry = self._store.get_entry(key)
        except OSError as exc:
            raise self._fail("get_ttl", exc) from None
        if entry is None or entry[1] == 0:
            return None
        return max(1, math.ceil((entry[1] - time.time() * 1000) / 1000))

    def refresh_ttl(self, key: str, ttl: int) -> bool:
        """Rewrite the entry with a new TTL; True if it existed."""
        value = self.get(key)
        if value is None:
            return False
        self.set(key, value, ttl)
        return True

    def get_buffer(self, key: str) -> _Buffer | None:
        value = self.get(key)
        return None if value is None else _Buffer(value)

    def set_streaming(
        self, key: str, write_payload: Callable[[BinaryIO], None], ttl: int | None = None
    ) -> None:
        out = io.BytesIO()
        write_payload(out)
        self.set(key, out.getvalue(), ttl)

    def stats(self) -> dict[str, int]:
        """bytes and entries in the directory now; this process's counts of
        corrupt entries dropped, entries evicted, values too large, scans."""
        try:
            return dict(self._store.stats())
        except OSError as exc:
            raise self._fail("stats", exc) from None

    def evict(self) -> None:
        """Evict down to the bounds now (writes do this on their own)."""
        try:
            self._store.evict()
        except OSError as exc:
            raise self._fail("evict", exc) from None

    def health_check(self) -> tuple[bool, dict[str, Any]]:
        """Write, read back and delete a probe entry; never raises."""
        start = time.perf_counter()
        probe = f"__cachekit_health__:{id(self)}:{time.monotonic_ns()}"
        try:
            self._store.set(probe, b"ok", 10_000)
            ok = self._store.get(probe) == b"ok"
            self._store.delete(probe)
            error = None if ok else "probe entry did not read back"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            ok, error = False, f"{type(exc).__name__}: {exc}"
        latency = round((time.perf_counter() - start) * 1000.0, 3)
        return ok, {"backend": "file", "cache_dir": str(self.config.cache_dir),
                    "latency_ms": latency, "error": error}

    def __repr__(self) -> str:
        return f"FileBackend(cache_dir={str(self.config.cache_dir)!r})"
