"""Home of ConfigurationError for code importing it from here."""

from cachekit.exceptions import ConfigurationError

__all__ = ["ConfigurationError"]
