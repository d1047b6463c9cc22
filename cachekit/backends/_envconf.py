"""Reading a backend config's fields from ``<PREFIX><FIELD>`` environment
variables (FileBackendConfig, MemcachedBackendConfig): one parser per field
type, errors naming the variable."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from cachekit.exceptions import ConfigurationError


def parse_int(raw: str) -> int:
    return int(raw.strip(), 0)


def parse_float(raw: str) -> float:
    return float(raw.strip())


def parse_list(raw: str) -> tuple[str, ...]:
    text = raw.strip()
    if text.startswith("["):  # a JSON-style list: ["a:1", "b:2"]
        text = text.strip("[]")
    return tuple(p.strip().strip("'\"") for p in text.split(",") if p.strip().strip("'\""))


def read_prefixed(
    prefix: str, fields: Mapping[str, Callable[[str], Any]],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, parse in fields.items():
        var = prefix + name.upper()
        raw = env.get(var)
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{var}={raw!r} is invalid: {exc}") from None
    return values
