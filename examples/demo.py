"""A tour of @cache on the in-process L1 store: hits, misses, TTL, timings."""

from __future__ import annotations

import functools
import secrets
import time
from datetime import date
from decimal import Decimal

from cachekit import cache


def timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    elapsed = time.perf_counter() - start
    print(f"  {label:<38} {elapsed * 1e6:>10.2f} us  -> {result!r}")
    return result


@cache(ttl=60)
def slow_square(n: int) -> int:
    """Pretend to be expensive."""
    time.sleep(0.05)
    return n * n


@cache
def invoice(customer: str, *, currency: str = "EUR") -> dict:
    time.sleep(0.02)
    return {"customer": customer, "total": Decimal("199.90"), "currency": currency,
            "due": date(2026, 12, 31), "lines": (1, 2, 3)}


@cache(ttl=0.2)
def short_lived(x: int) -> float:
    return time.time()


def per_hit_ns(fn, arg, rounds: int = 200_000) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn(arg)
    return (time.perf_counter() - start) / rounds * 1e9


def main() -> None:
    print("1. First call runs the function (miss), the second is an L1 hit:")
    timed("slow_square(12)  [miss]", slow_square, 12)
    timed("slow_square(12)  [hit]", slow_square, 12)
    timed("slow_square(n=12) [hit, keyword form]", slow_square, n=12)
    print(f"  {slow_square.cache_info()}")

    print("\n2. Rich values keep their types (Decimal, date, tuple):")
    first = timed("invoice('acme')  [miss]", invoice, "acme")
    again = timed("invoice('acme', currency='EUR') [hit]", invoice, "acme", currency="EUR")
    print(f"  same object returned from L1: {first is again}")

    print("\n3. TTL: an expired entry is never served")
    a = short_lived(1)
    time.sleep(0.25)
    b = short_lived(1)
    print(f"  value changed after the 0.2 s TTL: {a != b}")

    print("\n4. Invalidation")
    print(f"  invalidate_cache(12) -> {slow_square.invalidate_cache(12)}")
    timed("slow_square(12)  [miss again]", slow_square, 12)

    print("\n5. Hit cost against functools.lru_cache, same machine, same run:")

    @functools.lru_cache(maxsize=None)
    def lru(n: int) -> int:
        return n * n

    @cache
    def ours(n: int) -> int:
        return n * n

    lru(7), ours(7)
    lru_ns, ours_ns = per_hit_ns(lru, 7), per_hit_ns(ours, 7)
    print(f"  lru_cache hit: {lru_ns:6.1f} ns   cachekit L1 hit: {ours_ns:6.1f} ns   "
          f"ratio {ours_ns / lru_ns:.2f}x")

    print("\n6. @cache.secure: the store holds only AES-256-GCM ciphertext")
    demo_key = secrets.token_hex(32)  # in production: CACHEKIT_MASTER_KEY

    @cache.secure(master_key=demo_key, tenant_extractor=lambda patient_id, tenant: tenant)
    def medical_record(patient_id: int, tenant: str) -> dict:
        return {"patient": patient_id, "diagnosis": "J45.909", "tenant": tenant}

    timed("medical_record(7, 'clinic-a') [miss]", medical_record, 7, "clinic-a")
    timed("medical_record(7, 'clinic-a') [hit]", medical_record, 7, "clinic-a")
    stored = medical_record._peek(7, "clinic-a")
    print(f"  stored entry: {len(stored)} bytes, plaintext visible: {b'J45.909' in stored}")
    print(f"  key fingerprint (safe to log): {medical_record.keyring.fingerprint}")
    secure_ns = per_hit_ns(lambda pid: medical_record(pid, "clinic-a"), 7, rounds=50_000)
    print(f"  encrypted L1 hit (decrypt + decode per hit): {secure_ns:6.1f} ns")


if __name__ == "__main__":
    main()
