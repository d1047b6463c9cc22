"""FileBackendConfig: where a FileBackend keeps its entries and its bounds.

``from_env()`` reads ``CACHEKIT_FILE_<FIELD>`` (``CACHEKIT_FILE_CACHE_DIR``,
``CACHEKIT_FILE_MAX_SIZE_MB``, ...). Invalid values raise
ConfigurationError naming the field and what to pass.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cachekit.backends._envconf import parse_float, parse_int, read_prefixed
from cachekit.exceptions import ConfigurationError

ENV_PREFIX = "CACHEKIT_FILE_"
_ENV_FIELDS: dict[str, Callable[[str], Any]] = {
    "cache_dir": Path, "max_size_mb": parse_int, "max_value_mb": parse_int,
    "max_entry_count": parse_int, "lock_timeout_seconds": parse_float,
    "permissions": parse_int, "dir_permissions": parse_int,
}


def _default_dir() -> Path:
    return Path(tempfile.gettempdir()) / "cachekit"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class FileBackendConfig:
    """Options of a FileBackend.

    cache_dir: the directory of entry files (created with dir_permissions if
    absent; several processes may share it). max_size_mb / max_entry_count:
    the bounds LRU eviction keeps the directory under. max_value_mb: larger
    values are counted and not stored (at most half of max_size_mb).
    permissions / dir_permissions: modes of entry files and of a directory
    the backend creates (wider than 0o600 / 0o700 warns).
    lock_timeout_seconds: accepted for the reference API; eviction never
    waits for the lock file (a process that finds it held leaves eviction
    to its holder). fsync: fsync each entry before its rename (durable
    across power loss; off by default: an entry torn by a crash fails its
    checksum and is a miss).
    """

    cache_dir: Path = dataclasses.field(default_factory=_default_dir)
    max_size_mb: int = 1024
    max_value_mb: int = 100
    max_entry_count: int = 10000
    lock_timeout_seconds: float = 5.0
    permissions: int = 0o600
    dir_permissions: int = 0o700
    fsync: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.cache_dir, str):
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if not isinstance(self.cache_dir, os.PathLike):
            raise ConfigurationError("FileBackendConfig.cache_dir must be a path (str or Path)")
        if not _is_int(self.max_size_mb) or not 1 <= self.max_size_mb <= 1_000_000:
            raise ConfigurationError("FileBackendConfig.max_size_mb must be an int in 1..1000000")
        if not _is_int(self.max_value_mb) or self.max_value_mb < 1:
            raise ConfigurationError("FileBackendConfig.max_value_mb must be an int >= 1")
        if self.max_value_mb > self.max_size_mb * 0.5:
            raise ConfigurationError(
                f"FileBackendConfig.max_value_mb ({self.max_value_mb}) must be at most half of "
                f"max_size_mb ({self.max_size_mb})"
            )
        if not _is_int(self.max_entry_count) or not 100 <= self.max_entry_count <= 1_000_000:
            raise ConfigurationError(
                "FileBackendConfig.max_entry_count must be an int in 100..1000000"
            )
        if not isinstance(self.lock_timeout_seconds, (int, float)) or not (
            0.5 <= self.lock_timeout_seconds <= 30.0
        ):
            raise ConfigurationError(
                "FileBackendConfig.lock_timeout_seconds must be a number in 0.5..30.0"
            )
        for name, limit in (("permissions", 0o600), ("dir_permissions", 0o700)):
            mode = getattr(self, name)
            if not _is_int(mode) or not 0 <= mode <= 0o777:
                raise ConfigurationError(f"FileBackendConfig.{name} must be a mode such as {limit:#o}")
            if mode & ~limit:
                warnings.warn(
                    f"FileBackendConfig.{name}={mode:#o} is wider than {limit:#o}: "
                    "other users may read the cache",
                    UserWarning, stacklevel=3,
                )
        if not isinstance(self.fsync, bool):
            raise ConfigurationError("FileBackendConfig.fsync must be True or False")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> FileBackendConfig:
        """The config from ``CACHEKIT_FILE_*`` variables; keyword overrides win."""
        values = read_prefixed(ENV_PREFIX, _ENV_FIELDS, environ)
        values.update(overrides)
        return cls(**values)
