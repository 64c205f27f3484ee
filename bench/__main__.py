"""`python -m bench`: run the benchmarks and print one JSON document (tables on stderr)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import (
    auth,
    cluster,
    compaction,
    doors,
    kafka,
    many,
    merge,
    processes,
    quotas,
    reads,
    rebuild,
    reconcile,
    registry,
    sql,
    storage,
    table,
    transactions,
)

SECTIONS = (
    "storage",
    "kafka",
    "cluster",
    "processes",
    "table",
    "reads",
    "many",
    "transactions",
    "rebuild",
    "reconcile",
    "merge",
    "compaction",
    "registry",
    "quotas",
    "auth",
    "doors",
    "sql",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="StreamHouse benchmarks (prints JSON).")
    parser.add_argument("--wal-mb", type=int, default=64, help="MiB written per WAL/raw run.")
    parser.add_argument("--rounds", type=int, default=7, help="Alternating raw/WAL rounds.")
    parser.add_argument("--records", type=int, default=300_000, help="Records per Kafka run.")
    parser.add_argument(
        "--cluster-records", type=int, default=500_000, help="Records per cluster round."
    )
    parser.add_argument("--value-bytes", type=int, default=100, help="Bytes per record value.")
    parser.add_argument(
        "--dir", default=".", help="Scratch directory on the disk to measure (default: here)."
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="Run only this section (repeatable); default: every section. table, reads and "
        "many are issue 11's, driven by the C load generator (bench/loadgen.c).",
    )
    return parser


def _sections(args: argparse.Namespace) -> dict[str, Callable[[], Any]]:
    return {
        "storage": lambda: storage.run(args.wal_mb, args.dir, args.rounds),
        "kafka": lambda: kafka.run(args.records, args.value_bytes),
        "cluster": lambda: cluster.run(args.cluster_records, args.value_bytes),
        "processes": processes.run,
        "table": table.run,
        "reads": reads.run,
        "many": many.run,
        "transactions": transactions.run,
        "rebuild": rebuild.run,
        "reconcile": reconcile.run,
        "merge": merge.run,
        "compaction": compaction.run,
        "registry": registry.run,
        "quotas": quotas.run,
        "auth": auth.run,
        "doors": doors.run,
        "sql": sql.run,
    }


def main() -> None:
    args = _parser().parse_args()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),  # other work on the machine skews every figure
        },
    }
    timings: dict[str, float] = {}
    for name, section in _sections(args).items():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        report[name] = section()
        timings[name] = round(time.perf_counter() - started, 1)
    report["section_seconds"] = timings
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
