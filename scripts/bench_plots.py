"""PNG plots for scripts/bench_report.py (matplotlib, Agg). Each function
takes the medians in seconds and writes one file into `out`, returning its
name, or None when there is nothing to plot."""

from __future__ import annotations

import pathlib
import re


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60]


def _unit(values: list[float]) -> tuple[float, str]:
    top = max(values) if values else 0
    for scale, name in ((1e-3, "ms"), (1e-6, "us")):
        if top >= scale * 5:
            return scale, name
    return 1e-9, "ns"


def bars(out: pathlib.Path, filename: str, title: str, rows: dict[str, float], per: float = 1.0,
         log: bool = False) -> str | None:
    if not rows:
        return None
    plt = _plt()
    names = list(rows)
    secs = [rows[n] / per for n in names]
    scale, unit = _unit(secs)
    values = [s / scale for s in secs]
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(names) + 1.6))
    ax.barh(names, values, color=["#cc6677" if not n.startswith("cachekit") or "0.24" in n else "#4477aa"
                                  for n in names])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{unit} per call (median{', log' if log else ''})")
    ax.set_title(title, fontsize=10)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1f}" if v < 100 else f" {v:.0f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=100)
    plt.close(fig)
    return filename


def lines_by_size(out: pathlib.Path, filename: str, title: str, by_size: dict[str, dict[str, float]]) -> str | None:
    """by_size: {size label: {implementation: seconds}}; log-log, x in bytes."""
    sizes = {"100 B": 100, "1 KB": 1e3, "10 KB": 1e4, "100 KB": 1e5, "1 MB": 1e6, "10 MB": 1e7}
    labels = [s for s in sizes if s in by_size]
    if not labels:
        return None
    plt = _plt()
    names = list(dict.fromkeys(n for s in labels for n in by_size[s]))
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for name in names:
        xs = [sizes[s] for s in labels if name in by_size[s]]
        ys = [by_size[s][name] * 1e6 for s in labels if name in by_size[s]]
        ax.plot(xs, ys, marker="o", label=name, linestyle="--" if "0.24" in name else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([sizes[s] for s in labels], labels)
    ax.set_xlabel("value size")
    ax.set_ylabel("us per round trip (median, log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=100)
    plt.close(fig)
    return filename


def scaling(out: pathlib.Path, filename: str, title: str, groups: dict[str, dict[str, float]]) -> str | None:
    """groups: {label: {"1 thread": s, "2 threads": s, ...}} -> speedup vs threads."""
    if not groups:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = 1
    for label, rows in groups.items():
        base = rows.get("1 thread")
        if not base:
            continue
        ns = [int(k.split()[0]) for k in rows]
        ax.plot(ns, [base / v for v in rows.values()], marker="o", label=label)
        top = max(top, *ns)
    ax.plot([1, top], [1, top], color="#999999", linestyle=":", label="linear")
    ax.axhline(1.7, color="#cc6677", linestyle="--", linewidth=0.8, label="issue #13 target at 2 threads (1.7x)")
    ax.set_xlabel("threads (the machine has 2 vCPUs)")
    ax.set_ylabel("aggregate throughput / 1 thread")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=100)
    plt.close(fig)
    return filename
