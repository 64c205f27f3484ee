"""The load report: one JSON document (DIR/load.json), a Rich table on stderr, and DIR/latency.png,
the latency percentile distributions HDR-style (x: percentile on a 1/(1-p) log scale)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write files only

import matplotlib.pyplot as plt  # after choosing the backend
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table

from tests.load.clients import Latency

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
US_PER_MS = 1_000
MIB = 1_048_576
PLOT_STEPS_PER_DECADE = 20
PLOT_DECADES = 6  # up to the 99.9999th percentile (fewer when the histogram holds fewer)
PLOT_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99, 99.999)
PLOT_SIZE_IN = (9, 5.5)
PLOT_DPI = 110
TABLE_WIDTH = 120


def latency_json(histogram: HdrHistogram) -> dict[str, Any]:
    count = histogram.get_total_count()
    figures: dict[str, Any] = {"count": count}
    for name, percentile in PERCENTILES.items():
        value = histogram.get_value_at_percentile(percentile) if count else None
        figures[f"{name}_ms"] = None if value is None else value / US_PER_MS
    figures["max_ms"] = histogram.get_max_value() / US_PER_MS if count else None
    return figures


def histograms(produce: dict[str, Latency], end_to_end: Latency) -> dict[str, HdrHistogram]:
    named = {f"produce_acks_{acks}": latency.histogram for acks, latency in produce.items()}
    return {**named, "end_to_end": end_to_end.histogram}


def verdict(figures: dict[str, Any], latencies: dict[str, Any]) -> list[str]:
    """What went wrong, in words; empty when every acked record was consumed once, in order."""
    problems = [f"{count} x {what}" for what, count in figures["errors"].items()]
    problems += [f"{count} x {what}" for what, count in figures["anomalies"].items()]
    if figures["records"]["missing"]:
        problems.append(f"{figures['records']['missing']} acked records never consumed")
    problems += [
        f"{name}: no latencies recorded" for name, f in latencies.items() if not f["count"]
    ]
    background = figures.get("background")
    if background is not None and background["unanswered"]:
        problems.append(f"background: {background['unanswered']} requests unanswered")
    return problems


def plot(path: Path, named: dict[str, HdrHistogram]) -> None:
    figure, axes = plt.subplots(figsize=PLOT_SIZE_IN)
    for name, histogram in named.items():
        count = histogram.get_total_count()
        if not count:
            continue
        xs, ys = [], []
        for step in range(PLOT_DECADES * PLOT_STEPS_PER_DECADE + 1):
            tail = 10 ** (-step / PLOT_STEPS_PER_DECADE)  # 1 - p
            if tail * count < 1 and xs:  # past the last record: the max is the last point
                break
            xs.append(1 / tail)
            ys.append(histogram.get_value_at_percentile(100 * (1 - tail)) / US_PER_MS)
        axes.plot(xs, ys, label=name)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks([1 / (1 - p / 100) for p in PLOT_TICKS], [f"{p:g}%" for p in PLOT_TICKS])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_title("StreamHouse load: latency by percentile")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)


def show(report: dict[str, Any]) -> None:
    """The human table, on stderr (stdout carries the JSON document)."""
    table = Table(title=f"load: {report['summary_line']}", title_justify="left")
    for column in ["", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"]:
        table.add_column(column, justify="left" if not column else "right")
    for name, f in report["latency"].items():
        cells = [f.get(f"{p}_ms") for p in (*PERCENTILES, "max")]
        table.add_row(name, str(f["count"]), *("—" if c is None else f"{c:.2f}" for c in cells))
    Console(stderr=True, width=TABLE_WIDTH).print(table)


def summary_line(report: dict[str, Any]) -> str:
    agent = report["agent"]
    return (
        f"{report['rate_achieved']:.0f}/{report['rate_asked']:g} records/s for "
        f"{report['produce_s']:.1f} s, {report['settings']['partitions']} partitions, "
        f"{report['settings']['clients']} measured clients, {report['settings']['connections']} "
        "connections asked "
        f"(agent counted {agent['kafka_connections_peak']} connections); agent RSS peak "
        f"{agent['rss_peak_bytes'] / MIB:.0f} MiB, open files peak {agent['open_files_peak']}; "
        + ("OK" if report["ok"] else "FAILED: " + "; ".join(report["problems"]))
    )


def write_report(
    report_dir: Path, figures: dict[str, Any], produce: dict[str, Latency], end_to_end: Latency
) -> dict[str, Any]:
    named = histograms(produce, end_to_end)
    latencies = {name: latency_json(histogram) for name, histogram in named.items()}
    problems = verdict(figures, latencies)
    report = {**figures, "latency": latencies, "problems": problems, "ok": not problems}
    report["summary_line"] = summary_line(report)
    plot(report_dir / "latency.png", named)
    (report_dir / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    show(report)
    return report
