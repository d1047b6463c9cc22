"""cachekit (bootstrap)."""
from cachekit import _core  # noqa: F401
