"""`python -m bench`: run the benchmarks and print one JSON document."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from bench import cluster, kafka, processes, storage


def main() -> None:
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
    args = parser.parse_args()
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "storage": storage.run(args.wal_mb, args.dir, args.rounds),
        "kafka": kafka.run(args.records, args.value_bytes),
        "cluster": cluster.run(args.cluster_records, args.value_bytes),
        "processes": processes.run(args.records, args.value_bytes),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
