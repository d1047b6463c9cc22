"""Which application types a cached function's stored values may decode to.

Walked once, at decoration: the return annotation, through list[...],
dict[..., ...], tuple[...], set[...], Optional/Union (``X | Y``), Annotated,
and into the field annotations of the dataclasses, named tuples, pydantic
models and attrs classes found there. The result is the ``value_types`` dict
("module:qualname" -> class) CachedFunction hands to the C decoder; together
with cachekit.register_type it is all a stored entry can name
(docs/security.md, "Stored values never choose a class").
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

from cachekit.app_types import kind_of, type_name

_MAX_TYPES = 1024  # a pathological annotation graph stops here


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # unresolvable forward references: use what is there
        return {k: v for k, v in getattr(obj, "__annotations__", {}).items() if not isinstance(v, str)}


def _walk(tp: Any, out: dict[str, type], seen: set[int]) -> None:
    if id(tp) in seen or len(seen) > _MAX_TYPES:
        return
    seen.add(id(tp))
    origin = typing.get_origin(tp)
    if origin is not None:
        if origin is typing.Annotated:
            _walk(typing.get_args(tp)[0], out, seen)
            return
        if origin is typing.Literal:
            return
        if isinstance(origin, type):  # list[X], MyGeneric[X]: the class too
            _walk(origin, out, seen)
        for arg in typing.get_args(tp):
            _walk(arg, out, seen)
        return
    if not isinstance(tp, type):
        return
    if kind_of(tp) is None:
        return
    out[type_name(tp)] = tp
    if hasattr(tp, "__annotations__") or hasattr(tp, "__attrs_attrs__"):
        for hint in _hints(tp).values():
            _walk(hint, out, seen)


def trusted_types(func: Callable[..., Any]) -> dict[str, type] | None:
    """The application types named by func's return annotation, or None."""
    hints = _hints(func)
    if "return" not in hints:
        return None
    out: dict[str, type] = {}
    _walk(hints["return"], out, set())
    return out or None
