"""mypy sees through @cache: signatures and return types are kept, the cache
methods are typed, misuse is a type error (cachekit/decorators/types.py)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Each line ending in "# R: <type>" must reveal that type; each line ending in
# "# E: <code>" must be exactly one mypy error with that code; no other errors.
SAMPLE = '''
from cachekit import CacheInfo, DecoratorConfig, cache
from cachekit.decorators.types import CachedFunction


@cache
def plain(x: int, y: str = "a") -> list[int]:
    return [x]


@cache(ttl=5, namespace="ns")
def configured(x: int) -> str:
    return str(x)


@cache(config=DecoratorConfig(ttl=5))
def from_config(*, flag: bool) -> float:
    return 1.0


@cache.local
def local(x: int) -> bytes:
    return b""


@cache.secure(master_key="00" * 32)
def secure(x: int) -> dict[str, int]:
    return {}


def later(x: str) -> int:
    return 1


direct = cache(later, ttl=3)


class Repo:
    @cache
    def get(self, key: int) -> tuple[int, str]:
        return key, ""

    @cache
    @classmethod
    def make(cls, n: int) -> int:
        return n

    @cache
    @staticmethod
    def helper(n: int) -> str:
        return ""


classmethod_object = cache(classmethod(lambda cls: 1))


reveal_type(plain(1))  # R: list[int]
reveal_type(plain(1, y="b"))  # R: list[int]
reveal_type(configured(2))  # R: str
reveal_type(from_config(flag=True))  # R: float
reveal_type(local(3))  # R: bytes
reveal_type(secure(4))  # R: dict[str, int]
reveal_type(direct("x"))  # R: int
plain("one")  # E: arg-type
plain(1, 2)  # E: arg-type
configured(1, 2)  # E: call-arg
from_config(True)  # E: call-arg
local(x="no")  # E: arg-type
reveal_type(plain.cache_info())  # R: tuple[int, int, int, int, int | None, int | None, float, float | None, str | None, int, fallback=cachekit.info.CacheInfo]
reveal_type(plain.invalidate_cache(1))  # R: bool
reveal_type(plain.cache_key(1, y="z"))  # R: str
reveal_type(plain.cache_stats())  # R: dict[str, int]
reveal_type(plain.cache_clear())  # R: None
plain.invalidate_cache("one")  # E: arg-type
plain.no_such_method()  # E: attr-defined
reveal_type(plain.__wrapped__(1))  # R: list[int]
typed: CachedFunction[[int], str] = configured
wrong: CachedFunction[[int], int] = configured  # E: assignment
info: CacheInfo = local.cache_info()

repo = Repo()
reveal_type(repo.get(1))  # R: tuple[int, str]
repo.get("k")  # E: arg-type
reveal_type(Repo.get(repo, 1))  # R: tuple[int, str]
reveal_type(Repo.get.invalidate_cache(repo, 1))  # R: bool
reveal_type(repo.get.cache_key(1))  # R: str
repo.get.invalidate_cache("x")  # E: arg-type
reveal_type(repo.get.cache_info().hits)  # R: int
# The known limit (types.py): Repo.make(1) and repo.helper(1) are false errors.
reveal_type(repo.make(1))  # R: int
repo.make("n")  # E: arg-type
reveal_type(Repo.helper(1))  # R: str
reveal_type(classmethod_object)  # R: classmethod[Any, [], int]
'''


def test_mypy_keeps_signatures_and_types_the_cache_methods(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--cache-dir", str(tmp_path / ".mypy_cache"), str(sample)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    assert proc.returncode in (0, 1), proc.stderr
    lines = SAMPLE.splitlines()
    revealed: dict[int, str] = {}
    errors: dict[int, list[str]] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r".*sample\.py:(\d+): note: Revealed type is \"(.*)\"$", line)
        if m:
            revealed[int(m.group(1))] = m.group(2)
            continue
        m = re.match(r".*sample\.py:(\d+): error: .*\[([a-z-]+)\]$", line)
        if m:
            errors.setdefault(int(m.group(1)), []).append(m.group(2))
        elif ": error:" in line:
            pytest.fail(f"unexpected mypy output: {line}")
    for number, text in enumerate(lines, start=1):
        if "# R: " in text:
            assert revealed.get(number) == text.split("# R: ")[1], (number, text, proc.stdout)
        expected = [text.split("# E: ")[1]] if "# E: " in text else []
        assert errors.get(number, []) == expected, (number, text, proc.stdout)
    assert not set(errors) - set(range(1, len(lines) + 1))
