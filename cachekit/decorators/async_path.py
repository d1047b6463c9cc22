"""The miss path of cached ``async def`` functions.

The C side answers L1 hits itself (an awaitable that completes without
suspending). On a miss it calls the ``miss`` coroutine built here, which:

- runs the function once per key and event loop: concurrent awaits of the
  same missing key share one task, and its result or exception;
- asks L2 first when the function has one, in the loop's default executor
  (``off_loop``): the C call releases the GIL while it waits on the
  network, so the event loop never blocks on Redis;
- shields that task, so cancelling one waiter does not cancel the
  computation the others wait for (a task nobody waits for any more still
  finishes and stores its result);
- stores the result through ``CachedFunction._complete``, which encodes and
  stores it exactly as a synchronous miss would; waiters that joined the
  flight get a fresh copy of a mutable result (``_fresh``), as hits do.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from cachekit._core import Ready

# Ready (a hit) is a complete coroutine: send/throw/close and __await__.
# Registering it lets asyncio.create_task, gather and ensure_future take it.
collections.abc.Coroutine.register(Ready)

_Flight = tuple[asyncio.AbstractEventLoop, bytes]


def _landed(flights: dict[_Flight, asyncio.Task[Any]], flight: _Flight, task: asyncio.Task[Any]) -> None:
    if flights.get(flight) is task:
        del flights[flight]
    if not task.cancelled():
        # Every waiter may have been cancelled: mark the exception as seen
        # so asyncio does not log "exception was never retrieved".
        task.exception()


async def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in the loop's default executor: for the blocking
    L2 I/O of async functions (the C call releases the GIL while it waits)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


async def _compute(
    cached: Any,
    func: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    needs_l2: bool,
) -> Any:
    lease = None
    if needs_l2:
        # Off the loop: the L2 lookup, and with stampede_lease the wait for
        # another process's computation or the lease taken for ours.
        found, value, lease = await off_loop(cached._l2_fetch, *args, **kwargs)
        if found:
            return value
    try:
        result = await func(*args, **kwargs)
        if needs_l2:
            await off_loop(cached._complete, result, *args, **kwargs)
        else:
            cached._complete(result, *args, **kwargs)
    finally:
        if lease is not None:
            await off_loop(cached._l2_release, lease, *args, **kwargs)
    return result


def make_async_miss(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The coroutine function the C side calls on a miss of func."""
    flights: dict[_Flight, asyncio.Task[Any]] = {}

    async def miss(
        cached: Any, key: bytes, args: tuple[Any, ...], kwargs: dict[str, Any] | None, needs_l2: bool
    ) -> Any:
        loop = asyncio.get_running_loop()
        flight = (loop, key)
        task = flights.get(flight)
        if task is None:
            task = loop.create_task(_compute(cached, func, args, kwargs or {}, needs_l2))
            flights[flight] = task
            task.add_done_callback(functools.partial(_landed, flights, flight))
            return await asyncio.shield(task)
        # A waiter that joined gets its own copy, as a hit would.
        return cached._fresh(await asyncio.shield(task))

    return miss


def mark_coroutine_function(cached: Any, func: Callable[..., Any]) -> None:
    """Make inspect.iscoroutinefunction(cached) true, as it is for func.

    Python 3.12 has inspect.markcoroutinefunction; 3.11 recognises a
    function-like object by its code flags, so the wrapper carries the
    function's code, defaults and keyword defaults."""
    marker = getattr(inspect, "markcoroutinefunction", None)
    if marker is not None:
        marker(cached)
        return
    cached.__code__ = func.__code__
    cached.__defaults__ = func.__defaults__
    cached.__kwdefaults__ = func.__kwdefaults__
