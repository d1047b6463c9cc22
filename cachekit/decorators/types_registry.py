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


class _Walk:
    """One walk: the types found, and whether a forward reference could not
    be resolved yet (a class defined after the function, or the function's
    own class for a method)."""

    def __init__(self) -> None:
        self.out: dict[str, type] = {}
        self.seen: set[int] = set()
        self.incomplete = False


def _hints(obj: Any, walk: _Walk) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception:  # unresolvable forward references: use what is there
        walk.incomplete = True
        return {k: v for k, v in getattr(obj, "__annotations__", {}).items() if not isinstance(v, str)}


def _walk(tp: Any, walk: _Walk) -> None:
    out, seen = walk.out, walk.seen
    if isinstance(tp, (str, typing.ForwardRef)):
        walk.incomplete = True
        return
    if id(tp) in seen or len(seen) > _MAX_TYPES:
        return
    seen.add(id(tp))
    origin = typing.get_origin(tp)
    if origin is not None:
        if origin is typing.Annotated:
            _walk(typing.get_args(tp)[0], walk)
            return
        if origin is typing.Literal:
            return
        if isinstance(origin, type):  # list[X], MyGeneric[X]: the class too
            _walk(origin, walk)
        for arg in typing.get_args(tp):
            _walk(arg, walk)
        return
    if not isinstance(tp, type):
        return
    if kind_of(tp) is None:
        return
    out[type_name(tp)] = tp
    if hasattr(tp, "__annotations__") or hasattr(tp, "__attrs_attrs__"):
        for hint in _hints(tp, walk).values():
            _walk(hint, walk)


def _walk_return(func: Callable[..., Any]) -> _Walk:
    walk = _Walk()
    hints = _hints(func, walk)
    if "return" in hints:
        _walk(hints["return"], walk)
    elif "return" in getattr(func, "__annotations__", {}):
        walk.incomplete = True
    return walk


def trusted_types(func: Callable[..., Any]) -> dict[str, type] | None:
    """The application types named by func's return annotation, or None."""
    return _walk_return(func).out or None


def value_types_for(
    func: Callable[..., Any], on_event: Callable[[str, BaseException], None]
) -> tuple[dict[str, type] | None, Callable[[str, BaseException], None]]:
    """CachedFunction's value_types and on_event for func.

    When the annotation names a class that does not exist yet at decoration
    (``-> "User"`` on a method of User, or a class defined later in the
    module), the walk is repeated when a stored value first fails to decode,
    and the dict CachedFunction holds is filled in place: that one entry is
    a miss, the following ones decode. Nothing changes on the hit path."""
    walk = _walk_return(func)
    if not walk.incomplete:
        return walk.out or None, on_event
    types = dict(walk.out)
    state = {"done": False}

    def on_event_retrying(kind: str, exc: BaseException) -> None:
        if not state["done"] and kind in ("integrity_error", "decrypt_error"):
            again = _walk_return(func)
            types.update(again.out)
            state["done"] = not again.incomplete
        on_event(kind, exc)

    return types, on_event_retrying
