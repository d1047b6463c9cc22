"""Our serializers against the package index's cachekit 0.24.1 (the library
whose API we follow), in the same run: a small dict, a 1 MiB bytes value
and a 1,000-row DataFrame, serialize + deserialize.

Both libraries are imported as ``cachekit``, so each side runs in its own
interpreter: 0.24.1 from a venv of its own (``REF_VENV``, default
/tmp/ref024, created with pip when missing; the test skips when it cannot
be created), ours from this checkout. The same timing script runs in both
(best of 7 medians of a batch, after warm-up), one after the other, and
the ratio ours / 0.24.1 is printed with the other groups' ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REF_VENV = Path(os.environ.get("REF_VENV", "/tmp/ref024"))
REF_PYTHON = REF_VENV / "bin" / "python"
REF_PACKAGES = ["cachekit==0.24.1", "msgpack", "numpy", "pandas", "pyarrow", "orjson"]

# Runs in either interpreter; prints {case: median seconds per round trip}.
SCRIPT = textwrap.dedent(r'''
    import json, os, statistics, sys, time
    import numpy as np, pandas as pd
    from cachekit.serializers import ArrowSerializer, OrjsonSerializer, StandardSerializer

    SMALL = {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "active": True,
             "score": 98.5, "tags": ["admin", "math"]}
    BIG = os.urandom(1 << 20)
    rng = np.random.default_rng(8)
    FRAME = pd.DataFrame({
        "id": np.arange(1000), "x": rng.random(1000),
        "name": [f"user-{i}" for i in range(1000)],
        "cat": pd.Categorical(np.array(["a", "b", "c"])[np.arange(1000) % 3]),
    })
    std, js, arrow = StandardSerializer(), OrjsonSerializer(), ArrowSerializer()

    def rt(s, v):
        data, meta = s.serialize(v)
        return s.deserialize(data, meta)

    CASES = {
        "small dict, StandardSerializer": (std, SMALL, 20000),
        "small dict, OrjsonSerializer": (js, SMALL, 20000),
        "1 MiB bytes, StandardSerializer": (std, BIG, 200),
        "1000-row DataFrame, ArrowSerializer": (arrow, FRAME, 100),
    }
    out = {}
    for name, (s, v, n) in CASES.items():
        got = rt(s, v)
        ok = got.equals(v) if isinstance(v, pd.DataFrame) else got == v
        assert ok, name
        batch = max(1, n // 20)
        for _ in range(batch):
            rt(s, v)
        samples = []
        for _ in range(20):
            t0 = time.perf_counter()
            for _ in range(batch):
                rt(s, v)
            samples.append((time.perf_counter() - t0) / batch)
        out[name] = statistics.median(samples)
    print(json.dumps(out))
''')


def _ref_python() -> Path:
    def usable() -> bool:
        if not REF_PYTHON.exists():
            return False
        probe = subprocess.run(
            [str(REF_PYTHON), "-I", "-c", "import cachekit, pyarrow, orjson; print(cachekit.__version__)"],
            capture_output=True, text=True, cwd="/", timeout=120)
        return probe.returncode == 0 and probe.stdout.strip() == "0.24.1"

    if usable():
        return REF_PYTHON
    try:
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(REF_VENV / "bin" / "pip"), "install", "-q", *REF_PACKAGES],
                       check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot create the cachekit 0.24.1 venv at {REF_VENV}: {type(exc).__name__}")
    if not usable():
        pytest.skip(f"the venv at {REF_VENV} does not import cachekit 0.24.1")
    return REF_PYTHON


def _run(python: Path, *, ours: bool) -> dict[str, float]:
    env = dict(os.environ)
    if ours:
        env["PYTHONPATH"] = str(ROOT)
        argv = [str(python), "-c", SCRIPT]
    else:
        env.pop("PYTHONPATH", None)
        argv = [str(python), "-I", "-c", SCRIPT]  # -I: never this checkout's cachekit
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/",
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class _Timed:
    """What benchmarks/conftest.py's recorder reads from a benchmark."""

    def __init__(self, median: float) -> None:
        self.stats = type("S", (), {"stats": type("M", (), {"median": median})()})()
        self.extra_info: dict[str, object] = {}


def test_serializers_against_cachekit_024(request, benchmark, recorder):
    # benchmark: so --benchmark-only runs this test; the timing is the subprocesses'.
    del benchmark
    if request.config.getoption("benchmark_disable", False):
        pytest.skip("timing only (--benchmark-disable)")
    ref = _ref_python()
    # Alternate the two sides and keep each case's best median.
    theirs: dict[str, float] = {}
    ours: dict[str, float] = {}
    for _ in range(2):
        for side, python, is_ours in ((theirs, ref, False), (ours, Path(sys.executable), True)):
            for case, t in _run(python, ours=is_ours).items():
                side[case] = min(t, side.get(case, float("inf")))
    lines = []
    for case in ours:
        group = f"vs cachekit 0.24.1, {case}"
        recorder(_Timed(theirs[case]), group, "cachekit 0.24.1", baseline=True)
        recorder(_Timed(ours[case]), group, "cachekit (this checkout)")
        lines.append(f"{case}: ours {ours[case] * 1e6:,.1f} us, 0.24.1 {theirs[case] * 1e6:,.1f} us, "
                     f"ratio {ours[case] / theirs[case]:.2f}x")
    print("\n" + "\n".join(lines))
