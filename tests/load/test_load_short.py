"""The short form of the load run, for `make test-all`: the driver (`python -m tests.load`)
against its own agent with 1,000 partitions and 200 connections, 5 s of warm-up load then 15 s
measured; asserts what cannot depend on the machine's speed (every acked record consumed once,
in order; no errors; histograms filled; the agent sampled; the report and its PNG written).
Latency and throughput are measured, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PARTITIONS = 1_000
CONNECTIONS = 200
LOAD_SECONDS = 10
WARMUP_SECONDS = 5  # of load before the measured time; checked all the same
RATE = 10  # records/s: the agent falls behind at 10 over 1,000 partitions already (see README)
RUN_TIMEOUT_S = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(RUN_TIMEOUT_S + 10)
def test_short_load_consumes_every_acked_record_once_in_order(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "tests.load", "--report", str(tmp_path)]
    command += ["--partitions", str(PARTITIONS), "--connections", str(CONNECTIONS)]
    command += ["--seconds", str(LOAD_SECONDS), "--warmup-seconds", str(WARMUP_SECONDS)]
    command += ["--rate", str(RATE)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    report = json.loads((tmp_path / "load.json").read_text())
    assert report == json.loads(run.stdout), "stdout carries the same JSON document"
    assert report["problems"] == [] and report["ok"], report["summary_line"]
    assert run.returncode == 0, run.stderr[-2000:]
    records = report["records"]
    sent = RATE * (WARMUP_SECONDS + LOAD_SECONDS)
    assert records["sent"] == records["acked"] == records["consumed"] == sent
    for name, latency in report["latency"].items():
        assert latency["count"] > 0, name
    agent = report["agent"]
    assert agent["samples"] > 0 and agent["rss_peak_bytes"] > 0 and agent["open_files_peak"] > 0
    assert agent["kafka_connections_peak"] >= CONNECTIONS, "the agent counted every connection"
    background = report["background"]  # raw requests, never retried: errors are only noted
    assert background["answered"] == background["sent"] > 0, background
    assert (tmp_path / "latency.png").read_bytes().startswith(PNG_SIGNATURE)
