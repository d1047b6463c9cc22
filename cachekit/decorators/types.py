"""Static types of ``cache`` and of what it returns, for mypy and other checkers.

Nothing here runs: the decorated function is ``cachekit._core.CachedFunction``
at runtime. These Protocols tell a type checker that

- ``@cache``, ``@cache(...)``, ``@cache.local`` and ``@cache.secure(...)``
  keep the function's parameters (a ``ParamSpec``) and return type, and add
  the cache methods (:class:`CachedFunction`);
- a decorated method called on an instance takes the remaining parameters
  (:class:`CachedMethod`; ``Repo.get.invalidate_cache(repo, 42)`` still takes
  the instance first, as at runtime);
- ``cache(classmethod_or_staticmethod_object)`` gives one back.

Known limit (mypy 2.x): mypy treats ``@classmethod``/``@staticmethod`` as
flags on the function whatever the decorator order, and binds the first
parameter of a decorated *object* through its ``__get__`` without knowing
which flag applies. So with ``@cache`` on a classmethod, ``Cls.method(...)``
is reported as missing ``cls``, and on a staticmethod ``obj.method(...)`` as
having one argument too many (``obj.method`` for a classmethod and
``Cls.method`` for a staticmethod are right). Runtime behaviour is not
affected; silence those calls with ``# type: ignore[call-arg]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from cachekit.info import CacheInfo

if TYPE_CHECKING:
    from cachekit._core import Keyring, L1Store
    from cachekit.config.decorator import DecoratorConfig

P = ParamSpec("P")
R = TypeVar("R", covariant=True)
# Method-level variables (Protocol-level ones cannot be rebound per call).
_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)

__all__ = ["Cache", "CacheDecorator", "CacheIntent", "CachedFunction", "CachedMethod"]


class CachedMethod(Protocol[_T_co, P, R]):
    """A cached method got from an instance: ``obj.method``. The key-taking
    cache methods are bound too: ``obj.method.invalidate_cache(42)``."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def invalidate_cache(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    def ainvalidate_cache(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[bool]: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def cache_clear(self) -> None: ...
    def acache_clear(self) -> Awaitable[None]: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_stats(self) -> dict[str, int]: ...
    @property
    def __self__(self) -> _T_co: ...


class CachedFunction(Protocol[P, R]):
    """What ``@cache`` makes of a function: callable like it, plus the cache
    methods (docs/usage.md, "The decorated function")."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def invalidate_cache(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    def ainvalidate_cache(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[bool]: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def cache_clear(self) -> None: ...
    def acache_clear(self) -> Awaitable[None]: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_stats(self) -> dict[str, int]: ...
    def check_health(self, force: bool = False) -> dict[str, Any]: ...
    def get_health_status(self) -> str: ...
    @property
    def __wrapped__(self) -> Callable[P, R]: ...
    @property
    def store(self) -> L1Store: ...
    @property
    def keyring(self) -> Keyring | None: ...
    @property
    def fail_closed(self) -> bool: ...

    # Looked up on the class: the function itself. On an instance: a bound
    # method without its first parameter.
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[_T, _P], _R], instance: _T, owner: type[Any] | None = None
    ) -> CachedMethod[_T, _P, _R]: ...


class CacheDecorator(Protocol):
    """What ``@cache(...)`` returns: applied to a function, it caches it."""

    @overload
    def __call__(self, func: classmethod[_T, _P, _R], /) -> classmethod[_T, _P, _R]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]  # staticmethod is callable; it wins
        self, func: staticmethod[_P, _R], /
    ) -> staticmethod[_P, _R]: ...
    @overload
    def __call__(self, func: Callable[_P, _R], /) -> CachedFunction[_P, _R]: ...


class CacheIntent(Protocol):
    """``cache`` and its presets: ``@cache``, ``@cache(...)``, ``cache(f, ...)``."""

    @overload
    def __call__(
        self, func: classmethod[_T, _P, _R], /, *, config: DecoratorConfig | None = None,
        **options: Any,
    ) -> classmethod[_T, _P, _R]: ...
    @overload
    def __call__(
        self, func: staticmethod[_P, _R], /, *, config: DecoratorConfig | None = None,
        **options: Any,
    ) -> staticmethod[_P, _R]: ...
    @overload
    def __call__(
        self, func: Callable[_P, _R], /, *, config: DecoratorConfig | None = None, **options: Any
    ) -> CachedFunction[_P, _R]: ...
    @overload
    def __call__(
        self, func: None = None, /, *, config: DecoratorConfig | None = None, **options: Any
    ) -> CacheDecorator: ...


class Cache(CacheIntent, Protocol):
    """The type of ``cachekit.cache``: a :class:`CacheIntent` with presets."""

    local: CacheIntent
    secure: CacheIntent
    minimal: CacheIntent
    production: CacheIntent
    dev: CacheIntent
    test: CacheIntent
