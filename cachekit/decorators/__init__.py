"""Decorators. ``from cachekit.decorators import cache`` is the same object as
``from cachekit import cache``."""

from cachekit.decorators.cache import cache

__all__ = ["cache"]
