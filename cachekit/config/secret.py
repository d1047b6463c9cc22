"""SecretStr: a string that never shows itself.

``repr``, ``str``, ``format`` and f-strings give ``**********``; the value is
reachable only through :meth:`SecretStr.get_secret_value`. Secrets refuse to
be pickled or hashed, so they do not end up in caches, logs or core-dump
friendly copies by accident.
"""

from __future__ import annotations

import hmac
from typing import Any

MASK = "**********"


class SecretStr:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"SecretStr wraps a str, not {type(value).__name__}")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretStr('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        # Constant time, so comparing keys does not leak their prefix.
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("SecretStr cannot be pickled")


def mask(value: object) -> object:
    """Return value, or the mask if it is a SecretStr."""
    return MASK if isinstance(value, SecretStr) else value
