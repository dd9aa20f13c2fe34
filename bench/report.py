"""The results: JSON file, the table of ratios against targets, PNG plots."""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

from bench.measures import BS_SWEEP, MEASURES, PLOT_SIDES, QD_SWEEP
from bench.startup import MEASURES as STARTUP_MEASURES


def write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _abs(side: dict | None, metric: str) -> str:
    if not side:
        return ""
    v = side[metric]["median"]
    unit = {"iops": "IOPS", "mbps": "MB/s", "ops": "ops/s"}[metric]
    return f"{v:,.0f} {unit}"


def table(data: dict) -> str:
    """Every measure: median, min-max, target, met, and the absolute medians."""
    rows = [("measure", "median", "min-max", "target", "met", "numerator", "denominator")]
    for m in MEASURES + STARTUP_MEASURES:
        r = data["measures"].get(m.key)
        if r is None:
            continue
        fmt = "{:.1f}" if m.unit == "MiB" else "{:.2f}"
        sfx = " MiB" if m.unit == "MiB" else ""
        target = "report" if m.target is None else f"{m.op} {fmt.format(m.target)}{sfx}"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        num = _abs(r.get("numerator"), m.metric) if m.den else ""
        den = _abs(r.get("denominator"), m.metric) if m.den else ""
        rows.append((m.key, fmt.format(r["median"]) + sfx,
                     f"{fmt.format(r['min'])}-{fmt.format(r['max'])}", target, met, num, den))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    met = [r["met"] for r in data["measures"].values() if r["met"] is not None]
    lines.append(f"{sum(met)}/{len(met)} targets met "
                 f"({data['mode']}: {data['rounds']} round(s), fio {data['fio_seconds']:g} s, "
                 f"nvmfd {data['nvmfd_seconds']:g} s per run; ratios are medians of per-round "
                 "ratios)")
    return "\n".join(lines)


def cpu_table(data: dict) -> str:
    """CPU per I/O of each process of the CPU_JOBS runs, bridge against nbdkit.

    "CPUs busy" is that CPU per I/O times the IOPS: near the machine's CPU
    count a run is CPU-bound, and only less CPU per I/O makes it faster.
    """
    cpus = (data.get("machine") or {}).get("cpus") or os.cpu_count()
    rows = [("job", "side", "fio", "server processes", "total", "IOPS", "CPUs busy")]
    for job, sides in data.get("cpu_per_io", {}).items():
        for i, (side, cpu) in enumerate(sides.items()):
            iops = statistics.median(data["runs"][f"{side}:{job}"]["iops"])
            servers = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()
                                if k not in ("fio", "total"))
            rows.append((job if i == 0 else "", side, f"{cpu['fio']:.1f}", servers,
                         f"{cpu['total']:.1f}", f"{iops:,.0f}",
                         f"{cpu['total'] * iops / 1e6:.2f} of {cpus}"))
    if len(rows) == 1:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["CPU per I/O, µs (medians; fio's own figures, the servers' from /proc):"]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < 2 or j == 3 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plots(data: dict, stem: Path) -> list[str]:
    """IOPS against queue depth (4 KiB randread) and MB/s against block size
    (randread QD32), bridge and nbdkit, medians with min-max bars.

    Returns the PNG paths; none (and a note on stderr) without matplotlib.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed: no plots (pip install matplotlib)",
              file=sys.stderr)
        return []
    runs = data["runs"]
    made = []
    for name, sweep, metric, xlabel, ylabel, title in [
        ("iops-qd", QD_SWEEP, "iops", "queue depth", "IOPS",
         "4 KiB randread, IOPS against queue depth"),
        ("mbps-bs", BS_SWEEP, "mbps", "block size (KiB)", "MB/s",
         "randread QD32, throughput against block size"),
    ]:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for side in PLOT_SIDES:
            xs, med, lo, hi = [], [], [], []
            for x, job in sweep:
                vals = runs.get(f"{side}:{job}", {}).get(metric)
                if not vals:
                    continue
                s = sorted(vals)
                m = s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
                xs.append(x)
                med.append(m)
                lo.append(m - s[0])
                hi.append(s[-1] - m)
            if xs:
                ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3,
                            label="bridge (session -> nvmfd)" if side == "bridge"
                            else "nbdkit memory")
        ax.set_xscale("log", base=2)
        ax.set_xticks([x for x, _ in sweep])
        ax.set_xticklabels([str(x) for x, _ in sweep])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{title}\n({data['mode']}, {data['rounds']} round(s), fio nbd engine)",
                     fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = stem.with_name(f"{stem.name}-{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made.append(str(path))
    return made
