"""FileBackend: a persistent L2 in a local directory, shared by processes."""

from cachekit.backends.file.backend import FileBackend
from cachekit.backends.file.config import FileBackendConfig

__all__ = ["FileBackend", "FileBackendConfig"]
