"""Checks of the freshness options (docs/freshness.md).

``DecoratorConfig.stale_ttl`` / ``swr_by_default`` and the ``swr_*`` fields
of ``L1CacheConfig``. Kept apart from decorator.py so the rules are in one
place; the decorator resolves them with :func:`stale_seconds`.
"""

from __future__ import annotations

import math
from typing import Any

from cachekit.exceptions import ConfigurationError


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def validate_l1_freshness(l1: Any) -> None:
    if not isinstance(l1.swr_enabled, bool):
        raise ConfigurationError(f"l1.swr_enabled must be True or False, not {l1.swr_enabled!r}")
    ratio = l1.swr_threshold_ratio
    if not _number(ratio) or not 0 < ratio <= 1:
        raise ConfigurationError(
            f"l1.swr_threshold_ratio must be a number in (0, 1] (the share of the TTL after "
            f"which a hit starts a background refresh; 1 = only once stale), not {ratio!r}"
        )
    retry = l1.swr_retry_interval
    if not _number(retry) or not 0 < retry <= 86400:
        raise ConfigurationError(
            f"l1.swr_retry_interval must be seconds in (0, 86400], not {retry!r}"
        )


def validate_freshness(config: Any) -> None:
    stale = config.stale_ttl
    if stale is not None and (not _number(stale) or not 0 <= stale <= 30 * 86400):
        raise ConfigurationError(
            f"stale_ttl must be seconds in [0, 2592000] (how long past its TTL an entry is "
            f"still served while it is refreshed) or None, not {stale!r}"
        )
    if not isinstance(config.swr_by_default, bool):
        raise ConfigurationError(
            f"swr_by_default must be True or False, not {config.swr_by_default!r}"
        )
    if config.interop is not None and (stale is not None or config.swr_by_default):
        raise ConfigurationError(
            "stale_ttl / swr_by_default are not available with interop= entries (their format "
            "is shared with other SDKs): leave them unset"
        )
    if config.refresh_ttl_on_get and (stale is not None or config.swr_by_default):
        raise ConfigurationError(
            "refresh_ttl_on_get renews an L2 entry's TTL, which under stale_ttl would make a "
            "stale entry look fresh again: use one of them"
        )
    if not config.l1.swr_enabled and (stale is not None or config.swr_by_default):
        raise ConfigurationError(
            "stale_ttl / swr_by_default ask for stale-while-revalidate, which "
            "l1=L1CacheConfig(swr_enabled=False) turns off: drop one of them"
        )


def stale_seconds(config: Any, ttl: float | None, reference: bool) -> float | None:
    """The stale window of a function, or None when freshness is off.

    stale_ttl if set; else, with swr_by_default, the TTL itself. Needs a
    TTL (given or the settings' default)."""
    if not config.l1.swr_enabled:
        return None
    stale = config.stale_ttl
    if stale is None and config.swr_by_default:
        stale = ttl
    if stale is None:
        return None
    if ttl is None:
        raise ConfigurationError(
            "stale_ttl serves an entry for a while past its TTL, so it needs one: pass ttl= "
            "(or set CACHEKIT_DEFAULT_TTL)"
        )
    return float(stale)
