"""Describe a function's parameters for the C key builder.

The C side binds each call to this description, so positional and keyword
spellings of one call, and calls relying on defaults, give the same key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _is_method(func: Callable[..., Any], first: str | None) -> bool:
    """A plain function defined in a class body whose first parameter is self."""
    qualname = getattr(func, "__qualname__", "")
    parts = qualname.split(".")
    return first == "self" and len(parts) >= 2 and parts[-2] != "<locals>"


def key_spec(func: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments describing func's parameters for ``CachedFunction``."""
    try:
        # The signature users see: for a functools.wraps wrapper that is the
        # wrapped function's. A call that does not bind to it runs uncached.
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        # No introspectable signature (some builtins): key on (*args, **kwargs).
        return {
            "pos_names": (),
            "n_posonly": 0,
            "kwonly_names": (),
            "defaults": {},
            "varargs": True,
            "varkw": True,
            "self_is_instance": False,
        }
    positional = [p for p in params if p.kind in _POSITIONAL]
    kwonly = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return {
        "pos_names": tuple(p.name for p in positional),
        "n_posonly": sum(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in positional),
        "kwonly_names": tuple(p.name for p in kwonly),
        "defaults": {p.name: p.default for p in params if p.default is not inspect.Parameter.empty},
        "varargs": any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params),
        "varkw": any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params),
        "self_is_instance": _is_method(func, positional[0].name if positional else None),
    }
