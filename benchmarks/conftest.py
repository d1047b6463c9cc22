"""Collect medians of each benchmark and print ratios against the baseline
of its group (measured in the same run) at the end of the session.

Each benchmark test calls ``record(benchmark, group, name, baseline=...)``
after running; the summary shows ``name: median, ratio to and difference from baseline``.
With --benchmark-disable (the smoke run in scripts/test.sh) nothing is
timed and the summary is skipped.

With BENCH_GROUPS_JSON=path the groups, medians and baselines are also
written to that JSON file at the end of the session, and each benchmark's
pytest-benchmark record carries its group and name in ``extra_info`` (what
scripts/bench_report.py reads).
"""

from __future__ import annotations

import json
import os

import pytest

_results: dict[str, dict[str, float]] = {}
_baselines: dict[str, str] = {}
_notes: dict[str, list[str]] = {}


def record(benchmark, group: str, name: str, *, baseline: bool = False) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable
        return
    _results.setdefault(group, {})[name] = stats.stats.median
    extra = getattr(benchmark, "extra_info", None)
    if extra is not None:
        extra.update(cachekit_group=group, cachekit_name=name, cachekit_baseline=baseline)
    if baseline:
        _baselines[group] = name


def record_value(group: str, name: str, seconds: float, *, baseline: bool = False) -> None:
    """A median measured outside pytest-benchmark's timer (an external tool
    such as redis-benchmark, a subprocess in another venv, or a loop that
    alternates several clients round by round), in seconds."""
    _results.setdefault(group, {})[name] = seconds
    if baseline:
        _baselines[group] = name


def record_note(group: str, text: str) -> None:
    """A line the report prints under the group (a peer that was skipped,
    the placement a figure was taken in)."""
    _notes.setdefault(group, []).append(text)


@pytest.fixture
def recorder():
    return record


@pytest.fixture
def value_recorder(request, benchmark):
    """record_value, or None under --benchmark-disable (the smoke run: the
    test runs its code once, small, and records nothing). It asks for the
    benchmark fixture so that --benchmark-only keeps the test; the test
    times itself (several clients alternating round by round, or an
    external tool), so the fixture itself stays unused."""
    if request.config.getoption("benchmark_disable", default=False):
        return None
    benchmark.extra_info["cachekit_self_timed"] = True
    return record_value


@pytest.fixture
def note_recorder():
    return record_note


def pytest_sessionfinish(session):
    path = os.environ.get("BENCH_GROUPS_JSON")
    if path and _results:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"results": _results, "baselines": _baselines, "notes": _notes}, f, indent=1)


def pytest_terminal_summary(terminalreporter):
    if not _results:
        return
    tr = terminalreporter
    tr.section("cachekit ratios (median, same run)")
    for group, rows in _results.items():
        base_name = _baselines.get(group)
        base = rows.get(base_name) if base_name else None
        tr.write_line(f"{group}:")
        for name, median in rows.items():
            # The ratio, and the difference for targets stated in absolute
            # terms ("encryption adds at most 1 us").
            ratio = f"{median / base:6.2f}x {(median - base) * 1e9:+10.1f} ns  vs {base_name}" if base else ""
            tr.write_line(f"  {name:<32} {median * 1e9:>12.1f} ns   {ratio}")
