"""Application types as cached values: the rules the C codec calls.

The codec (src/binding/py_codec_app.c) stores a dataclass, named tuple, Enum
member, OrderedDict, defaultdict, subclass of a builtin type, pydantic model or
attrs instance as an extension value ``(code, "module:qualname", body)``
(docs/format.md, codes 12-19). ``encode`` says how an object looks;
``decode`` rebuilds one from a class the decoder already resolved. Stored
bytes never choose what to import: the C decoder looks the name up only in
the types trusted for the call (the decorated function's return annotation,
see cachekit/decorators/types_registry.py) and in the process-wide registry
that :func:`register_type` fills. Nothing here imports a module at decode
time.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import sys
import weakref
from typing import Any

from cachekit import _core

DATACLASS = 12
NAMEDTUPLE = 13
ENUM = 14
ORDEREDDICT = 15
DEFAULTDICT = 16
SUBCLASS = 17
PYDANTIC = 18
ATTRS = 19
SHARED = 0x100  # or-ed into the code encode returns: see _plan

# defaultdict factories that can be named in stored bytes, by name.
FACTORIES: dict[str, type] = {
    t.__name__: t for t in (list, dict, set, int, str, tuple, frozenset, float)
}
_FACTORY_NAMES = {t: n for n, t in FACTORIES.items()}

# Builtin bases whose subclasses are stored as (class, base value). Order
# matters only for classes deriving from several (first match on the MRO).
SUBCLASS_BASES = (int, str, float, bytes, dict, list, tuple, set, frozenset)

# The builtin value of a subclass instance, through the base type's own
# methods: int(x) or str(x) would call an overridden __int__ / __str__.
_TO_BASE: dict[type, Any] = {
    int: int.__index__,
    str: str.__str__,
    float: float.__float__,
    bytes: bytes.__bytes__,
    dict: lambda o: dict(dict.items(o)),
    list: lambda o: list(list.__iter__(o)),
    tuple: lambda o: tuple(tuple.__iter__(o)),
    set: lambda o: set(set.__iter__(o)),
    frozenset: lambda o: frozenset(frozenset.__iter__(o)),
}

# Process-wide trusted types, name -> class. The C decoder reads this dict.
REGISTRY: dict[str, type] = {}


def type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _pydantic_base() -> Any:
    mod = sys.modules.get("pydantic")
    return getattr(mod, "BaseModel", None) if mod is not None else None


def _attrs_has(cls: type) -> bool:
    return "__attrs_attrs__" in getattr(cls, "__dict__", {}) or hasattr(cls, "__attrs_attrs__")


def _dataclass_init_fields(cls: type) -> tuple[tuple[str, ...], bool]:
    """Names of the init=True fields, and whether __init__ takes them all
    positionally (no kw_only field), which is the cheaper call."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return tuple(f.name for f in fields), not any(f.kw_only is True for f in fields)


def _attrs_init_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute name, __init__ argument name) of the init=True attributes."""
    fields = getattr(cls, "__attrs_attrs__")
    return tuple((a.name, getattr(a, "alias", None) or a.name.lstrip("_")) for a in fields if a.init)


def kind_of(cls: type) -> int | None:
    """The extension code instances of cls are stored with, or None."""
    base = _pydantic_base()
    if base is not None and issubclass(cls, base):
        return PYDANTIC
    if issubclass(cls, enum.Enum):
        return ENUM
    if dataclasses.is_dataclass(cls):
        return DATACLASS
    if _attrs_has(cls):
        return ATTRS
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return NAMEDTUPLE
    if issubclass(cls, collections.defaultdict):
        return DEFAULTDICT
    if issubclass(cls, collections.OrderedDict):
        return ORDEREDDICT
    if any(issubclass(cls, b) and cls is not b for b in SUBCLASS_BASES) and cls is not bool:
        return SUBCLASS
    return None


# id(cls) -> (weak reference to cls, plan), the plan being (code, name, init
# field names or None, positional): encode and decode run for every
# application-type value on a miss, an L1 copy or an L2 decode, so the class
# is examined once. Keyed by id with a weak reference (checked on lookup,
# removed when the class dies) because WeakKeyDictionary lookups cost more
# than the rest of encode.
_Plan = tuple[int | None, str, tuple[str, ...] | None, bool]
_plans: dict[int, tuple[weakref.ref[type], _Plan]] = {}


def _forget(key: int) -> Any:
    def drop(_ref: Any) -> None:
        _plans.pop(key, None)

    return drop


def _plan(cls: type) -> _Plan:
    hit = _plans.get(id(cls))
    if hit is not None and hit[0]() is cls:
        return hit[1]
    code = kind_of(cls)
    names, positional = _dataclass_init_fields(cls) if code == DATACLASS else (None, False)
    # Instances that cannot change may be shared by L1 hits when their
    # contents are immutable too: frozen dataclasses, named tuples, Enums.
    frozen = code in (ENUM, NAMEDTUPLE) or (
        code == DATACLASS and bool(getattr(cls, "__dataclass_params__").frozen)
    )
    plan = (code + SHARED if frozen and code is not None else code, type_name(cls), names, positional)
    try:
        _plans[id(cls)] = (weakref.ref(cls, _forget(id(cls))), plan)
    except TypeError:  # not weak-referenceable
        pass
    return plan


def encode(obj: Any) -> tuple[int, str, Any] | None:
    """(code, name, body) for an application-type value, None for any other
    type. code may have SHARED or-ed in (the instance itself is immutable).
    Raises UnsupportedTypeError for a defaultdict whose factory cannot
    be named."""
    cls = type(obj)
    flagged, name, names, _ = _plan(cls)
    if flagged is None:
        return None
    code = flagged & 0xFF
    if code == DATACLASS:
        assert names is not None
        return flagged, name, [getattr(obj, n) for n in names]
    elif code == ENUM:
        body = obj._value_
    elif code == NAMEDTUPLE:
        body = list(tuple.__iter__(obj))
    elif code == ORDEREDDICT:
        body = dict(obj)
    elif code == DEFAULTDICT:
        factory = obj.default_factory
        if factory is not None and _FACTORY_NAMES.get(factory) is None:
            raise _core.UnsupportedTypeError(
                f"cachekit cannot store a defaultdict whose default_factory is {factory!r}; "
                f"supported factories: None, {', '.join(FACTORIES)}"
            )
        body = [None if factory is None else _FACTORY_NAMES[factory], dict(obj)]
    elif code == PYDANTIC:
        body = obj.model_dump(mode="python", round_trip=True)
    elif code == ATTRS:
        body = [getattr(obj, name) for name, _ in _attrs_init_fields(cls)]
    else:
        base = next(b for b in cls.__mro__ if b in SUBCLASS_BASES)
        body = _TO_BASE[base](obj)
    return flagged, name, body


def _check(ok: bool, code: int, cls: Any) -> None:
    if not ok:
        raise TypeError(f"{cls!r} is not a class stored with extension code {code}")


def decode(code: int, cls: Any, body: Any) -> Any:
    """Rebuild an instance of cls (already resolved among trusted types)."""
    _check(isinstance(cls, type), code, cls)
    kind, _, names, positional = _plan(cls)
    _check(kind is not None and kind & 0xFF == code, code, cls)
    if code == DATACLASS:
        assert names is not None
        _check(type(body) is list and len(body) == len(names), code, cls)
        return cls(*body) if positional else cls(**dict(zip(names, body)))
    if code == ENUM:
        return cls(body)
    if code == NAMEDTUPLE:
        _check(type(body) is list and len(body) == len(cls._fields), code, cls)
        return cls._make(body)
    if code == ORDEREDDICT:
        _check(type(body) is dict, code, cls)
        return cls(body)
    if code == DEFAULTDICT:
        _check(type(body) is list and len(body) == 2 and type(body[1]) is dict, code, cls)
        name = body[0]
        factory = None if name is None else FACTORIES[name]
        return cls(factory, body[1])
    if code == PYDANTIC:
        _check(type(body) is dict, code, cls)
        return cls.model_validate(body)
    if code == ATTRS:
        fields = _attrs_init_fields(cls)
        _check(type(body) is list and len(body) == len(fields), code, cls)
        return cls(**{alias: v for (_, alias), v in zip(fields, body)})
    base = type(body)
    _check(base in SUBCLASS_BASES and issubclass(cls, base), code, cls)
    value = cls(body)
    _check(type(value) is cls, code, cls)
    return value


def register_type(cls: type) -> type:
    """Trust cls process-wide for decoding cached values, and return it (so
    it works as a class decorator). Needed for application types a cached
    function returns without naming them in its return annotation."""
    if not isinstance(cls, type) or kind_of(cls) is None:
        raise TypeError(
            f"register_type() needs a dataclass, named tuple, Enum, OrderedDict or defaultdict "
            f"subclass, subclass of a builtin type, pydantic model or attrs class, not {cls!r}"
        )
    REGISTRY[type_name(cls)] = cls
    return cls


REGISTRY[type_name(collections.OrderedDict)] = collections.OrderedDict
REGISTRY[type_name(collections.defaultdict)] = collections.defaultdict
_core._set_app_codec(encode, decode, REGISTRY)
