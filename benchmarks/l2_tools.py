"""Helpers shared by the L2 peer and throughput benchmarks: redis-benchmark's
GET latency on a given server, CPU placement with sched_setaffinity, and
aggregate throughput of N threads. Not a test module (no test_ prefix)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

REDIS_BENCHMARK = shutil.which("redis-benchmark")


def redis_benchmark_get(port: int, n: int = 20_000, cpu: int | None = None) -> tuple[float, float]:
    """(average, p50) seconds of `redis-benchmark -c 1 -t get` against the
    server on 127.0.0.1:port, optionally pinned to one CPU with taskset."""
    assert REDIS_BENCHMARK is not None
    cmd = [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(port), "-c", "1", "-n", str(n),
           "-t", "get", "-d", "100", "--csv"]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r.get("test") == "GET"]
    if not rows:
        raise RuntimeError(f"no GET row in redis-benchmark's output: {out!r}")
    return float(rows[0]["avg_latency_ms"]) / 1e3, float(rows[0]["p50_latency_ms"]) / 1e3


@contextlib.contextmanager
def placed(server_pid: int, server_cpu: int | None, client_cpu: int | None) -> Iterator[None]:
    """Pin the server process and this process (all its threads) to the
    given CPUs (None: any CPU), restoring both afterwards."""
    every = os.sched_getaffinity(0)
    server_before = os.sched_getaffinity(server_pid)
    os.sched_setaffinity(server_pid, every if server_cpu is None else {server_cpu})
    os.sched_setaffinity(0, every if client_cpu is None else {client_cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, every)
        os.sched_setaffinity(server_pid, server_before)


def per_call(fn: Callable[[int], object], calls: int) -> float:
    """Seconds per call of one loop of `calls` alternating-key calls."""
    start = time.perf_counter()
    for i in range(calls):
        fn(i & 1)
    return (time.perf_counter() - start) / calls


def aggregate_per_call(fn: Callable[[int], object], threads: int, calls: int) -> float:
    """Wall seconds per call when `threads` threads share `calls` calls
    (the inverse of aggregate throughput), all threads released together."""
    each = calls // threads
    gate = threading.Barrier(threads + 1)

    def work() -> None:
        gate.wait()
        for i in range(each):
            fn(i & 1)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in pool:
        t.join()
    return (time.perf_counter() - start) / (each * threads)


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]
