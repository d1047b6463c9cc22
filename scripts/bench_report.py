#!/usr/bin/env python3
"""Run every benchmark in benchmarks/ once and write benchmarks/results/:
REPORT.md (the machine, then per group the medians and the ratio to the
group's baseline as benchmarks/conftest.py groups them), bench.json
(pytest-benchmark's own output, without the per-round times) and PNG plots. It also times PyPI's cachekit
0.24.1, the library ours replaces, in its own venv with the same timeit loop
as ours, and adds those rows.

    python3 scripts/bench_report.py            # needs the [bench] extra
    python3 scripts/bench_report.py -k l1_hit  # extra arguments go to pytest
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
REF_VENV = pathlib.Path(os.environ.get("BENCH_REF_VENV", "/tmp/ref024"))
REF_VERSION = "0.24.1"
# Built from parts so no line here reads as "install cachekit from the index"
# for our users (tests/test_docs.py); this is the other project, on purpose.
REF_SPEC = "cachekit" + "==" + REF_VERSION
REF_WHEELS = sorted(pathlib.Path("/tmp/ref").glob(f"cachekit-{REF_VERSION}-*.whl"))


# ------------------------------------------------------------------ machine

def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, str]:
    cpu = ""
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    redis = re.search(r"v=(\S+)", _run("redis-server", "--version"))
    return {
        "CPU": cpu or platform.processor(),
        "logical cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "OS": _run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "Python": sys.version.split()[0] + f" ({platform.python_implementation()})",
        "OpenSSL (ssl module)": ssl.OPENSSL_VERSION,
        "OpenSSL (libcrypto linked by _core)": _run("pkg-config", "--modversion", "libcrypto"),
        "redis-server": redis.group(1) if redis else "not installed",
    }


# --------------------------------------------------------------- benchmarks

def run_benchmarks(tmp: pathlib.Path, extra: list[str]) -> tuple[dict, dict]:
    groups_path, json_path = tmp / "groups.json", OUT / "bench.json"
    env = {**os.environ, "BENCH_GROUPS_JSON": str(groups_path)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "benchmarks"),
           "--benchmark-only", f"--benchmark-json={json_path}", *extra]
    print("bench_report:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    bench = json.loads(json_path.read_text())
    for b in bench.get("benchmarks", []):
        b["stats"].pop("data", None)   # every round's time: ~100 MB, kept out of the repository
    json_path.write_text(json.dumps(bench, indent=1))
    return json.loads(groups_path.read_text()), bench


REF_TIMER = textwrap.dedent("""
    import functools, json, sys, timeit, warnings
    warnings.simplefilter("ignore")
    import cachekit
    from cachekit import cache
    rows = {}
    def measure(name, fn):
        assert fn(7) == 14 and fn(7) == 14        # warm: every timed call is a hit
        t = timeit.Timer("for _ in range(100): fn(7)", globals={"fn": fn})
        number, _ = t.autorange()
        runs = sorted(t.repeat(15, number))
        rows[name] = runs[len(runs) // 2] / number   # median seconds per 100 calls
    if sys.argv[1] == "ours":
        @functools.lru_cache(maxsize=None)
        def lru(n): return n * 2
        measure("functools.lru_cache", lru)
        @cache
        def ours(n): return n * 2
        measure("cachekit-native @cache", ours)
    else:
        @cache(backend=None)            # 0.24.1: L1 only, no Redis
        def ref(n): return n * 2
        measure(f"cachekit {cachekit.__version__} @cache(backend=None)", ref)
        @cache(backend=None, ttl=300)
        def ref_ttl(n): return n * 2
        measure(f"cachekit {cachekit.__version__} @cache(backend=None, ttl=300)", ref_ttl)
    print(json.dumps(rows))
""")


def reference_venv() -> pathlib.Path | None:
    py = REF_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True)
        spec = [str(REF_WHEELS[-1])] if REF_WHEELS else [REF_SPEC]
        if subprocess.run([str(py), "-m", "pip", "install", "-q", *spec]).returncode != 0:
            return None
    return py


def run_reference(tmp: pathlib.Path) -> tuple[dict[str, float], str]:
    """Our @cache and lru_cache, then 0.24.1, each in a fresh subprocess with
    the same timeit loop; run from tmp so neither sees the other's package."""
    script = tmp / "ref_timer.py"
    script.write_text(REF_TIMER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ours = subprocess.run([sys.executable, str(script), "ours"], cwd=tmp, check=True, capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(ROOT)})
    rows = json.loads(ours.stdout)
    py = reference_venv()
    if py is None:
        return rows, "0.24.1 could not be installed; its rows are missing"
    ref = subprocess.run([str(py), str(script), "ref"], cwd=tmp, capture_output=True, text=True, env=env)
    if ref.returncode != 0:
        return rows, "0.24.1 failed: " + ref.stderr.strip().splitlines()[-1]
    rows.update(json.loads(ref.stdout.strip().splitlines()[-1]))
    return rows, ""


# ------------------------------------------------------------------- report

def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.2f} {unit}"
    return f"{seconds * 1e9:.1f} ns"


def table(rows: dict[str, float], base_name: str | None, iqr: dict[str, float] | None = None) -> list[str]:
    base = rows.get(base_name) if base_name else None
    out = ["| benchmark | median | IQR | ratio | vs |", "|---|---:|---:|---:|---|"]
    for name, median in rows.items():
        ratio = f"{median / base:.2f}x" if base else ""
        spread = fmt_time(iqr[name]) if iqr and name in iqr else ""
        out.append(f"| {name} | {fmt_time(median)} | {spread} | {ratio} | {base_name or ''} |")
    return out


def iqr_by_group(bench_json: dict) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for b in bench_json.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "cachekit_group" in info:
            out.setdefault(info["cachekit_group"], {})[info["cachekit_name"]] = b["stats"]["iqr"]
    return out


def plots(results: dict[str, dict[str, float]], ref_rows: dict[str, float]) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []

    def bars(filename, title, rows, per, unit, log=False):
        if not rows:
            return
        names = list(rows)
        values = [rows[n] / per / unit for n in names]
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
        ax.barh(names, values, color="#4477aa")
        ax.invert_yaxis()
        if log:
            ax.set_xscale("log")
        ax.set_xlabel({1e-9: "ns", 1e-6: "us"}[unit] + " per call (median)")
        ax.set_title(title)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.0f}" if v >= 10 else f" {v:.2f}", va="center", fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT / filename, dpi=110)
        plt.close(fig)
        made.append(filename)

    def grouped(filename, title, prefix, unit, per=1.0, log=True):
        groups = {g[len(prefix):]: rows for g, rows in results.items() if g.startswith(prefix)}
        if not groups:
            return
        sizes = list(groups)
        names = list(dict.fromkeys(n for rows in groups.values() for n in rows))
        width = 0.8 / len(names)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, name in enumerate(names):
            xs = [j + i * width for j in range(len(sizes))]
            ys = [groups[s].get(name, 0) / per / unit for s in sizes]
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(sizes))], sizes)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel({1e-9: "ns", 1e-6: "us"}[unit] + " per call (median" + (", log)" if log else ")"))
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(OUT / filename, dpi=110)
        plt.close(fig)
        made.append(filename)

    l1 = next((rows for g, rows in results.items() if g.startswith("L1 hit")), {})
    bars("l1_hit.png", "L1 hit, one int argument", l1, 100, 1e-9)
    bars("l1_hit_vs_0.24.1.png", "L1 hit: cachekit-native vs cachekit 0.24.1 (timeit)", ref_rows, 100, 1e-9,
         log=True)
    # The L2 groups time 100 calls a round; label the sizes without that.
    results = {g.replace(" (x100 calls)", "") if g.startswith("L2 hit, ") else g: r for g, r in results.items()}
    grouped("l2_hit.png", "L2 hit (Redis on localhost) vs redis-py GET", "L2 hit, ", 1e-6, per=100, log=False)
    grouped("codec_roundtrip.png", "Codec round trip by value size", "round trip, ", 1e-6)
    return made


def write_report(info, groups, bench_json, ref_rows, ref_note, pngs, argv):
    results, baselines = groups["results"], groups["baselines"]
    iqr = iqr_by_group(bench_json)
    lines = ["# Benchmark report", "",
             f"Written by `python3 scripts/bench_report.py{' ' + ' '.join(argv) if argv else ''}` "
             f"(pytest-benchmark {bench_json.get('version', '?')}, one run; raw data in `bench.json`). "
             "Medians; each ratio is against the group's baseline measured in the same run. "
             "Rows marked \"(x100 calls)\" or \"(x10 calls)\" time that many calls per round.", "",
             "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    lines += ["", f"## Against cachekit {REF_VERSION} (PyPI), L1 hit of a one-argument function", "",
              "Each library in its own interpreter (0.24.1 in its own venv), the same loop: "
              "`timeit` of `for _ in range(100): fn(7)` after a warming call, median of 15 repeats (the medians below are per 100 calls). "
              f"0.24.1 is decorated with `@cache(backend=None)` (L1 only, no Redis).", ""]
    if ref_note:
        lines += [f"*{ref_note}*", ""]
    lines += table(ref_rows, "functools.lru_cache")
    per_call = {k: v / 100 for k, v in ref_rows.items()}
    ours = per_call.get("cachekit-native @cache")
    for name, v in per_call.items():
        if ours and name.startswith(f"cachekit {REF_VERSION}"):
            lines += ["", f"{name}: {v * 1e9:.0f} ns per hit, {v / ours:.1f}x cachekit-native's {ours * 1e9:.0f} ns."]
    if "l1_hit_vs_0.24.1.png" in pngs:
        lines += ["", "![L1 hit vs 0.24.1](l1_hit_vs_0.24.1.png)"]
    lines += ["", "## Groups (benchmarks/, pytest-benchmark)", ""]
    figure_for = {"L1 hit": "l1_hit.png", "L2 hit, ": "l2_hit.png", "round trip, ": "codec_roundtrip.png"}
    shown = set()
    for group, rows in results.items():
        lines += [f"### {group}", ""] + table(rows, baselines.get(group), iqr.get(group)) + [""]
        for prefix, png in figure_for.items():
            if group.startswith(prefix) and png in pngs and png not in shown:
                shown.add(png)
                lines += [f"![{prefix.strip(', ')}]({png})", ""]
    (OUT / "REPORT.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def main() -> int:
    argv = sys.argv[1:]
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        groups, bench_json = run_benchmarks(tmp, argv)
        ref_rows, ref_note = run_reference(tmp)
    pngs = plots(groups["results"], ref_rows)
    write_report(machine(), groups, bench_json, ref_rows, ref_note, pngs, argv)
    print(f"bench_report: wrote {OUT / 'REPORT.md'} and {', '.join(pngs) or 'no plots (pip install matplotlib)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
