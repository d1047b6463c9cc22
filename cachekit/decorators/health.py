"""check_health() and get_health_status() of a decorated function.

A cold path (called by health endpoints, not per cached call), so it lives
in Python. The function is healthy when its L1 store answers and its
backend, if any, does; a backend that is down leaves it "degraded", since
L1 and the function still serve every call.
"""

from __future__ import annotations

import time
from typing import Any


def attach_health(cached: Any, backend: Any, l2: Any, qualified_name: str) -> None:
    def check_health(force: bool = False) -> dict[str, Any]:
        """Health of this function's tiers: status ("healthy", "degraded" or
        "unhealthy"), per-component details, and how long the check took.
        ``force`` is accepted for the reference API; every check is live."""
        del force
        start = time.perf_counter()
        stats = cached.store.stats()
        components: dict[str, Any] = {
            "l1": {"status": "healthy", "entries": stats["count"], "bytes": stats["bytes"]},
        }
        status = "healthy"
        if backend is not None:
            try:
                ok, details = backend.health_check()
            except Exception as exc:  # a user backend's check must not raise out of ours
                ok, details = False, {"error": type(exc).__name__}
            component = {"status": "healthy" if ok else "unhealthy", **dict(details)}
            if l2 is not None:
                component["breaker"] = l2.stats()["state"]
            components["l2"] = component
            if not ok:
                status = "degraded"
        return {
            "function": qualified_name,
            "status": status,
            "components": components,
            "duration_ms": (time.perf_counter() - start) * 1000.0,
        }

    def get_health_status() -> str:
        """"healthy", "degraded" or "unhealthy" (see check_health)."""
        return str(check_health()["status"])

    cached.check_health = check_health
    cached.get_health_status = get_health_status
