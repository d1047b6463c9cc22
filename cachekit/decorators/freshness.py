"""Background refreshes for stale-while-revalidate (docs/freshness.md).

The C hit path claims at most one refresh per entry and retry interval
(ck_l1.c) and calls the refresher built here with the call's arguments.
The refresher only schedules: sync functions run on a small process-wide
thread pool (at most ``MAX_WORKERS`` threads, ``MAX_PENDING`` queued
refreshes; past that a claim is skipped and retried later), async ones as
a task on the running event loop. A key already being refreshed by this
function is not scheduled twice. The refresh runs in a copy of the
caller's contextvars, calls the function, and stores the result with
``CachedFunction._swr_complete``, which lands only on the entry it was
claimed for (not on one invalidated or replaced since). A refresh whose
function raises is counted (``refresh_errors``), reported once per
function to the log, and the stale value keeps being served.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cachekit.decorators.async_path import off_loop

MAX_WORKERS = 4
MAX_PENDING = 256

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pending = 0
_tasks: set[asyncio.Task[Any]] = set()

Refresher = Callable[[Any, bytes, int, tuple[Any, ...], "dict[str, Any] | None"], bool]


def _submit(job: Callable[[], None]) -> bool:
    """Queue job on the refresh pool; False when it is full or shut down."""
    global _pool, _pool_pid, _pending
    with _lock:
        if _pending >= MAX_PENDING:
            return False
        if _pool is None or _pool_pid != os.getpid():
            # A forked child does not inherit the parent's threads.
            _pool = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="cachekit-refresh")
            _pool_pid = os.getpid()
        pool = _pool
        _pending += 1

    def run() -> None:
        global _pending
        try:
            job()
        finally:
            with _lock:
                _pending -= 1

    try:
        pool.submit(run)
    except RuntimeError:  # interpreter shutting down
        with _lock:
            _pending -= 1
        return False
    return True


def make_refresher(
    func: Callable[..., Any],
    is_async: bool,
    store_off_loop: bool,
    on_event: Callable[[str, BaseException], None],
) -> Refresher:
    """The refresher of one decorated function (func: what C calls on a miss)."""
    running: set[bytes] = set()

    def failed(cached: Any, exc: BaseException) -> None:
        cached._swr_failed()
        on_event("refresh_error", exc)

    def run_sync(cached: Any, key: bytes, gen: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            result = func(*args, **kwargs)
            cached._swr_complete(gen, key, result, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the stale value stays; counted
            failed(cached, exc)
        finally:
            running.discard(key)

    async def run_async(
        cached: Any, key: bytes, gen: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            result = await func(*args, **kwargs)
            if store_off_loop:  # the L2 write blocks: not on the loop
                await off_loop(cached._swr_complete, gen, key, result, *args, **kwargs)
            else:
                cached._swr_complete(gen, key, result, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the stale value stays; counted
            failed(cached, exc)
        finally:
            running.discard(key)

    def refresher(
        cached: Any, key: bytes, gen: int, args: tuple[Any, ...], kwargs: dict[str, Any] | None
    ) -> bool:
        if key in running:
            return False
        kw = kwargs or {}
        ctx = contextvars.copy_context()
        if is_async:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False  # no loop to run it on: the next claim retries
            running.add(key)
            task = loop.create_task(run_async(cached, key, gen, args, kw), context=ctx)
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
            return True
        running.add(key)
        if not _submit(lambda: ctx.run(run_sync, cached, key, gen, args, kw)):
            running.discard(key)
            return False
        return True

    return refresher
