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
        "redis-benchmark": (_run("redis-benchmark", "--version").split() or ["not installed"])[-1],
        "load average at start (other work on this shared machine)": _run("cat", "/proc/loadavg"),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"cachekit-native (this repository)": _run("git", "-C", str(ROOT), "describe", "--always", "--dirty")}
    for dist in ("pytest-benchmark", "redis", "hiredis", "msgpack", "cryptography", "cachetools",
                 "cashews", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out[f"cachekit {REF_VERSION} (PyPI, own venv)"] = str(REF_VENV)
    return out


# --------------------------------------------------------------- benchmarks

def run_benchmarks(tmp: pathlib.Path, extra: list[str], ref_py: pathlib.Path | None) -> tuple[dict, dict, int]:
    groups_path, json_path = tmp / "groups.json", OUT / "bench.json"
    env = {**os.environ, "BENCH_GROUPS_JSON": str(groups_path)}
    if ref_py is not None:
        env["BENCH_REF_PYTHON"] = str(ref_py)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "benchmarks"),
           "--benchmark-only", f"--benchmark-json={json_path}", *extra]
    print("bench_report:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    text = json_path.read_text() if json_path.exists() else ""
    bench = json.loads(text) if text.strip() else {"benchmarks": []}
    # Self-timed tests leave an empty record; every round's time is ~100 MB.
    bench["benchmarks"] = [b for b in bench.get("benchmarks", []) if b.get("stats")]
    for b in bench["benchmarks"]:
        b["stats"].pop("data", None)
    json_path.write_text(json.dumps(bench, indent=1))
    groups = json.loads(groups_path.read_text()) if groups_path.exists() else {}
    groups.setdefault("results", {})
    groups.setdefault("baselines", {})
    groups.setdefault("notes", {})
    add_generic_groups(groups, bench)
    return groups, bench, rc


def add_generic_groups(groups: dict, bench: dict) -> None:
    """Benchmarks that do not go through benchmarks/conftest.py's recorder
    (a new file's own pytest-benchmark groups, e.g. cluster or coherence
    figures) join the report by their pytest-benchmark group, or their file
    when they have none. A row whose extra_info has baseline=True (or
    cachekit_baseline) is the group's baseline."""
    for b in bench.get("benchmarks", []):
        info = b.get("extra_info") or {}
        if "cachekit_group" in info:
            continue
        group = b.get("group") or pathlib.Path(b.get("fullname", "?").split("::")[0]).stem
        rows = groups["results"].setdefault(group, {})
        rows[b.get("name", "?")] = b["stats"]["median"]
        if info.get("baseline") or info.get("cachekit_baseline"):
            groups["baselines"][group] = b.get("name", "?")
        groups.setdefault("generic", []).append(group) if group not in groups.get("generic", []) else None


REF_TIMER = ROOT / "scripts" / "bench_ref_timer.py"


def reference_venv() -> tuple[pathlib.Path | None, str]:
    """0.24.1's interpreter, creating its venv on first use; (None, why) when
    it cannot be installed (no network to the index, a failed build)."""
    py = REF_VENV / "bin" / "python"
    if py.exists():
        return py, ""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(REF_VENV)], check=True, timeout=300)
        spec = [str(REF_WHEELS[-1])] if REF_WHEELS else [REF_SPEC]
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *spec], capture_output=True, text=True,
                           timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cachekit {REF_VERSION} could not be installed ({e}); its rows are missing"
    if r.returncode != 0:
        shutil.rmtree(REF_VENV, ignore_errors=True)
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"cachekit {REF_VERSION} could not be installed (pip: {tail}); its rows are missing"
    return py, ""


def _timer(py: str, mode: str, tmp: pathlib.Path, ours: bool) -> tuple[object | None, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REDIS_URL", "CACHEKIT_REDIS_URL")}
    if ours:
        env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([py, str(REF_TIMER), mode], cwd=tmp, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(r.stdout.strip().splitlines()[-1]), ""


def run_reference(tmp: pathlib.Path, ref_py: pathlib.Path | None, ref_note: str):
    """L1 hits and serializer round trips by size: ours and 0.24.1, each in
    a fresh interpreter with the same timeit loops (scripts/bench_ref_timer.py),
    run from tmp so neither sees the other's package."""
    l1, why = _timer(sys.executable, "l1", tmp, ours=True)
    if l1 is None:
        raise SystemExit(f"bench_report: our L1 timer failed: {why}")
    sizes, why = _timer(sys.executable, "sizes", tmp, ours=True)
    if sizes is None:
        raise SystemExit(f"bench_report: our size timer failed: {why}")
    notes = [ref_note] if ref_note else []
    if ref_py is not None:
        for mode, into in (("l1", l1), ("sizes", sizes)):
            got, why = _timer(str(ref_py), mode, tmp, ours=False)
            if got is None:
                notes.append(f"cachekit {REF_VERSION} {mode} timer failed: {why}")
            elif mode == "l1":
                into.update(got)
            else:
                for size, rows in got.items():
                    into.setdefault(size, {}).update(rows)
    return l1, sizes, " ".join(notes)


# ------------------------------------------------------------------- report


TARGET_P50, TARGET_THREADS = 1.3, 1.7
SIZE_LABELS = ["100 B", "1 KB", "10 KB", "100 KB", "1 MB", "10 MB"]
PROFILE_HINTS = (  # where a loss in a group of this name is explained
    (("L2", "Redis", "issue #13", "thread"), "`profile_l2_hit.txt` (strace syscall counts per hit, perf top symbols)"),
    (("L1", "hit returning"), "`bash scripts/callgrind_secure.sh` (instructions per hit) and docs/design.md"),
    (("round trip", "seal", "serialize", "AES"), "docs/performance-values.md"),
)


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.2f} {unit}"
    return f"{seconds * 1e9:.1f} ns"


def is_ours(name: str) -> bool:
    return name.startswith("cachekit") and REF_VERSION not in name


def table(rows: dict[str, float], base_name: str | None, iqr: dict[str, float] | None = None) -> list[str]:
    base = rows.get(base_name) if base_name else None
    out = ["| benchmark | median | IQR | ratio | vs |", "|---|---:|---:|---:|---|"]
    for name, median in rows.items():
        ratio = f"{median / base:.2f}x" if base else ""
        spread = fmt_time(iqr[name]) if iqr and name in iqr else ""
        out.append(f"| {name} | {fmt_time(median)} | {spread} | {ratio} | {base_name or ''} |")
    return out


def thread_table(rows: dict[str, float]) -> list[str]:
    base = rows.get("1 thread")
    out = ["| threads | wall time per call (aggregate) | calls/s | vs 1 thread |", "|---|---:|---:|---:|"]
    for name, v in rows.items():
        out.append(f"| {name} | {fmt_time(v)} | {1 / v:,.0f} | {base / v:.2f}x |" if base else f"| {name} | {fmt_time(v)} | | |")
    return out


def iqr_by_group(bench_json: dict) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for b in bench_json.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "cachekit_group" in info:
            out.setdefault(info["cachekit_group"], {})[info["cachekit_name"]] = b["stats"]["iqr"]
    return out


def by_size(results: dict, sizes_timer: dict, kind: str) -> dict[str, dict[str, float]]:
    """{size: {implementation: seconds}} from the pytest groups of one kind
    and the timer's serializer rows (StandardSerializer plain,
    EncryptionWrapper encrypted)."""
    wanted = "StandardSerializer" if kind == "plain" else "EncryptionWrapper"
    out: dict[str, dict[str, float]] = {}
    for size in SIZE_LABELS:
        rows = dict(results.get(f"round trip by size, {kind}, {size}", {}))
        rows.update({f"{n} (timeit)": v for n, v in sizes_timer.get(size, {}).items() if n.endswith(wanted)})
        if rows:
            out[size] = rows
    return out


def size_table(data: dict[str, dict[str, float]], peer: str) -> list[str]:
    sizes = [s for s in SIZE_LABELS if s in data]
    names = list(dict.fromkeys(n for s in sizes for n in data[s]))
    out = ["| implementation | " + " | ".join(sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for n in names:
        cells = []
        for s in sizes:
            v, base = data[s].get(n), data[s].get(peer)
            cells.append("" if v is None else fmt_time(v) + (f" ({v / base:.2f}x)" if base and n != peer else ""))
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out


def hint_for(group: str) -> str:
    for words, hint in PROFILE_HINTS:
        if any(w in group for w in words):
            return hint
    return "no profile recorded for this group"


def losses(results: dict, baselines: dict) -> list[str]:
    out = []
    for group, rows in results.items():
        base_name = baselines.get(group)
        if not base_name or is_ours(base_name) or group.startswith(("thread", "issue #13")):
            continue
        base = rows[base_name]
        for name, v in rows.items():
            if is_ours(name) and v > base * 1.05:
                out.append(f"- **{group}**: {name} {fmt_time(v)} is {v / base:.2f}x {base_name} "
                           f"({fmt_time(base)}). Why: {hint_for(group)}.")
    return out


def targets(results: dict) -> tuple[list[str], list[str]]:
    """Issue #13's two targets per placement: (table lines, misses)."""
    lines = ["| placement | secure L2 hit 100 B | redis-benchmark GET p50 | ratio (target <= 1.3x) | "
             "2 threads / 1 (target >= 1.7x) |", "|---|---:|---:|---:|---:|"]
    misses = []
    for group, rows in results.items():
        if not group.startswith("issue #13: secure L2 hit vs redis-benchmark p50, "):
            continue
        place = group.split("p50, ", 1)[1]
        hit, p50 = rows.get("cachekit @cache.secure L2 hit, 100 B"), rows.get("redis-benchmark -c 1 GET p50")
        thr = results.get(f"issue #13: threads, secure L2 hit 100 B, {place}", {})
        speed = thr["1 thread"] / thr["2 threads"] if "1 thread" in thr and "2 threads" in thr else None
        ratio = hit / p50 if hit and p50 else None
        cell_r = f"{ratio:.2f}x {'met' if ratio <= TARGET_P50 else '**missed**'}" if ratio else "n/a"
        cell_s = f"{speed:.2f}x {'met' if speed >= TARGET_THREADS else '**missed**'}" if speed else "n/a"
        lines.append(f"| {place} | {fmt_time(hit) if hit else ''} | {fmt_time(p50) if p50 else ''} | {cell_r} | {cell_s} |")
        if ratio and ratio > TARGET_P50:
            misses.append(f"- secure L2 hit / redis-benchmark p50, {place}: {ratio:.2f}x (target <= {TARGET_P50}x)")
        if speed and speed < TARGET_THREADS:
            misses.append(f"- 2 threads / 1 thread, {place}: {speed:.2f}x (target >= {TARGET_THREADS}x)")
    return lines, misses


PROFILE_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1] + "/tests")
    from redis_server import RedisServer
    from cachekit import cache
    from cachekit.backends import RedisBackend
    s = RedisServer().start()
    b = RedisBackend(s.url)
    @cache.secure(master_key="ab" * 32, backend=b, l1_max_entries=1, namespace="profile")
    def f(i):
        return {"payload": "x" * 100}
    f(0), f(1)
    n = int(sys.argv[2])
    start = time.perf_counter()
    for i in range(n):
        f(i & 1)
    print(f"{n} secure L2 hits, {(time.perf_counter() - start) / n * 1e6:.1f} us each (under the tracer)")
    assert f.cache_stats()["l2_hits"] >= n
    s.cleanup()
""")


def profile_l2(tmp: pathlib.Path) -> str:
    """System calls per secure L2 hit (strace -c of the calling thread; the
    server is another process and is not traced) and perf's top symbols of
    the client process. Written to results/profile_l2_hit.txt."""
    script = tmp / "profile_l2.py"
    script.write_text(PROFILE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    n = 20000
    out = ["Profile of a decorated @cache.secure L2 hit, 100 B (L1 out of the way), "
           "written by scripts/bench_report.py.", ""]
    if shutil.which("strace"):
        base = tmp / "strace_base.txt"
        full = tmp / "strace_full.txt"
        # The same script at n=0 gives the start-up calls to subtract.
        for count, path in ((0, base), (n, full)):
            subprocess.run(["strace", "-c", "-o", str(path), sys.executable, str(script), str(ROOT), str(count)],
                           env=env, capture_output=True, timeout=600)

        def counts(path: pathlib.Path) -> dict[str, int]:
            got = {}
            for line in path.read_text().splitlines() if path.exists() else []:
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    got[parts[-1]] = int(parts[3])
            return got
        b, f = counts(base), counts(full)
        out += ["## System calls per hit (strace -c, start-up subtracted)", ""]
        for name, c in sorted(f.items(), key=lambda kv: -(kv[1] - b.get(kv[0], 0))):
            per = (c - b.get(name, 0)) / n
            if per >= 0.01:
                out.append(f"  {name:<16} {per:6.2f}")
        out.append("")
    if shutil.which("perf"):
        data = tmp / "perf.data"
        r = subprocess.run(["perf", "record", "-q", "-o", str(data), sys.executable, str(script), str(ROOT), str(n)],
                           env=env, capture_output=True, text=True, timeout=600)
        rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym",
                              "--comm", "python3", "--stdio", "-q"], capture_output=True, text=True, timeout=300)
        if r.returncode == 0 and rep.returncode == 0:
            out += ["## perf record of the client process: top 30 symbols (self time)", ""]
            out += [ln for ln in rep.stdout.splitlines() if ln.strip()][:30]
            out.append("")
    if len(out) <= 2:
        return ""
    (OUT / "profile_l2_hit.txt").write_text("\n".join(out) + "\n", encoding="utf-8")
    return "profile_l2_hit.txt"


def plots(groups: dict, l1_rows: dict, sizes_timer: dict) -> dict[str, str]:
    """{section key: png file name}."""
    try:
        import bench_plots as bp
    except ImportError:
        return {}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {}
    results = groups["results"]
    made: dict[str, str | None] = {}
    l1 = next((rows for g, rows in results.items() if g.startswith("L1 hit, one int")), {})
    made["l1"] = bp.bars(OUT, "l1_hit.png", "L1 hit, one int argument (pytest-benchmark)", l1, per=100)
    made["ref"] = bp.bars(OUT, "l1_hit_vs_0.24.1.png", "L1 hit: cachekit-native vs cachekit 0.24.1 (timeit)",
                          l1_rows, log=True)
    for kind in ("plain", "encrypted"):
        made[f"size-{kind}"] = bp.lines_by_size(OUT, f"round_trip_by_size_{kind}.png",
                                                f"Round trip by value size, {kind}", by_size(results, sizes_timer, kind))
    made["peers"] = bp.bars(OUT, "l2_hit_peers.png", "L2 hit, 100 B: peers on one redis-server",
                            results.get("L2 hit vs peers, 100 B (per call)", {}), log=True)
    made["threads"] = bp.scaling(OUT, "thread_scaling.png", "Thread scaling (aggregate throughput)",
                                 {g.replace("thread scaling, ", "").replace("issue #13: threads, ", ""): r
                                  for g, r in results.items() if g.startswith(("thread scaling", "issue #13: threads"))})
    for group in groups.get("generic", []):
        made[f"generic:{group}"] = bp.bars(OUT, f"group_{bp.slug(group)}.png", group, results[group])
    return {k: v for k, v in made.items() if v}


def write_report(info, vers, groups, bench_json, l1_rows, sizes_timer, ref_note, pngs, profile, rc, argv):
    results, baselines, notes = groups["results"], groups["baselines"], groups.get("notes", {})
    iqr = iqr_by_group(bench_json)
    shown: set[str] = set()
    img = lambda key, alt: [f"![{alt}]({pngs[key]})", ""] if key in pngs else []  # noqa: E731

    def group_block(group: str) -> list[str]:
        shown.add(group)
        body = thread_table(results[group]) if "thread" in group else table(results[group], baselines.get(group),
                                                                              iqr.get(group))
        return [f"### {group}", ""] + [f"*{n}*" for n in notes.get(group, [])] + ([""] if notes.get(group) else []) + body + [""]

    lines = ["# Benchmark report", "",
             f"Written by `python3 scripts/bench_report.py{' ' + ' '.join(argv) if argv else ''}` "
             f"(pytest-benchmark {bench_json.get('version', '?')}, one run; raw data in `bench.json`). "
             "Never edited by hand. Medians; each ratio is against its group's baseline measured in the same run. "
             "Rows marked \"(x100 calls)\" or \"(x10 calls)\" time that many calls per round; \"per call\" groups "
             "alternate their clients round by round. The machine is shared with other work (load average "
             "below), so absolute figures move between runs; the ratios within a group are what to read.", ""]
    if rc != 0:
        lines += [f"**pytest exited with {rc}: some benchmarks failed or were skipped; their rows are missing.**", ""]
    lines += ["## Machine and versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in {**info, **vers}.items()]
    tgt, misses = targets(results)
    lines += ["", "## Issue #13 throughput targets (this VM, 2 vCPUs)", ""] + tgt + [""]
    if misses:
        lines += ["Missed here:", ""] + misses + ["", f"Why: {hint_for('L2')}, and the per-call groups below "
                                                  "(redis-benchmark's average against its p50 shows how much of a "
                                                  "round trip is scheduling on this VM)."]
    loss = losses(results, baselines)
    for kind, peer in (("plain", "msgpack pack+unpack"), ("encrypted", "msgpack + AESGCM")):
        for size, rows in by_size(results, sizes_timer, kind).items():
            base = rows.get(peer)
            for name, v in rows.items():
                if base and name.endswith("(timeit)") and is_ours(name) and v > base * 1.05:
                    loss.append(f"- **round trip by size, {kind}, {size}**: {name} {fmt_time(v)} is "
                                f"{v / base:.2f}x {peer} ({fmt_time(base)}, pytest-benchmark). "
                                f"Why: {hint_for('round trip')}.")
    lines += ["", "## Where we lose", ""] + (loss or ["Nowhere in this run: every cachekit row is within 5% of "
                                                       "its group's baseline or faster."])
    lines += ["", f"## Against cachekit {REF_VERSION} (PyPI), L1 hit of a one-argument function", "",
              "Each library in its own interpreter (0.24.1 in its own venv), the same loop "
              "(`scripts/bench_ref_timer.py l1`): `timeit` of 100 calls after a warming call, median of 15 "
              "repeats, per call. 0.24.1 is decorated with `@cache(backend=None)` (L1 only, no Redis).", ""]
    if ref_note:
        lines += [f"*{ref_note}*", ""]
    lines += table(l1_rows, "functools.lru_cache") + [""]
    ours = l1_rows.get("cachekit-native @cache")
    for name, v in l1_rows.items():
        if ours and name.startswith(f"cachekit {REF_VERSION}"):
            lines += [f"{name}: {v * 1e9:.0f} ns per hit, {v / ours:.1f}x cachekit-native's {ours * 1e9:.0f} ns.", ""]
    lines += img("ref", "L1 hit vs 0.24.1")
    lines += ["## Round trips by value size", "",
              "`benchmarks/test_bench_sizes.py` (pytest-benchmark; `{\"payload\": random bytes}`, incompressible) "
              "and, marked (timeit), the serializer classes of both libraries through "
              "`scripts/bench_ref_timer.py sizes` (ours and 0.24.1 each in its own interpreter). "
              "Ratios are against msgpack (plain) or msgpack + cryptography AESGCM (encrypted).", ""]
    for kind, peer in (("plain", "msgpack pack+unpack"), ("encrypted", "msgpack + AESGCM")):
        data = by_size(results, sizes_timer, kind)
        if data:
            lines += [f"### {kind}", ""] + size_table(data, peer) + [""] + img(f"size-{kind}", f"round trip {kind}")
            shown.update(g for g in results if g.startswith(f"round trip by size, {kind}, "))
    lines += ["## L2 hits against peers", ""]
    for group in [g for g in results if g.startswith("L2 hit")]:
        lines += group_block(group)
    lines += img("peers", "L2 peers")
    lines += ["## Issue #13 groups and thread scaling", "", "The machine has 2 vCPUs: 4 threads can only overlap waits. An L1 hit "
              "holds the GIL for its whole length, so L1 hits cannot scale on a GIL build of CPython.", ""]
    for group in [g for g in results if g.startswith(("thread scaling", "issue #13"))]:
        lines += group_block(group)
    lines += img("threads", "thread scaling")
    cluster = [g for g in results if re.search(r"cluster|coherence|sentinel|invalidat", g, re.I) and g not in shown]
    lines += ["## Cluster and coherence", ""]
    if not cluster:
        lines += ["No cluster or coherence benchmark results in this run (any pytest-benchmark group whose name "
                  "mentions cluster, coherence, sentinel or invalidation appears here when present).", ""]
    for group in cluster:
        lines += group_block(group) + img(f"generic:{group}", group)
    lines += ["## Every other group (benchmarks/, pytest-benchmark)", ""]
    for group in [g for g in results if g not in shown]:
        lines += group_block(group)
        if group.startswith("L1 hit, one int"):
            lines += img("l1", "L1 hit")
        lines += img(f"generic:{group}", group)
    if profile:
        text = (OUT / profile).read_text(encoding="utf-8").split("## perf", 1)[0].split("\n", 2)[-1]
        lines += ["## Profile", "", f"`{profile}` (same folder): system calls per secure L2 hit and perf's top "
                  "symbols of the client, written by this run.", "", "```", text.strip(), "```", ""]
    (OUT / "REPORT.md").write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def main() -> int:
    argv = sys.argv[1:]
    OUT.mkdir(parents=True, exist_ok=True)
    for old in [*OUT.glob("*.png"), OUT / "profile_l2_hit.txt"]:
        old.unlink(missing_ok=True)
    info, vers = machine(), versions()
    ref_py, ref_note = reference_venv()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        groups, bench_json, rc = run_benchmarks(tmp, argv, ref_py)
        l1_rows, sizes_timer, ref_note = run_reference(tmp, ref_py, ref_note)
        profile = profile_l2(tmp)
    info["load average at end"] = _run("cat", "/proc/loadavg")
    sys.path.insert(0, str(ROOT / "scripts"))
    pngs = plots(groups, l1_rows, sizes_timer)
    write_report(info, vers, groups, bench_json, l1_rows, sizes_timer, ref_note, pngs, profile, rc, argv)
    print(f"bench_report: wrote {OUT / 'REPORT.md'} and {', '.join(pngs.values()) or 'no plots (pip install matplotlib)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
