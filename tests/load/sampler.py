"""Samples the agent under load: resident memory and open files of its process and children
(psutil), and the Kafka connections it counts itself (its /metrics), every SAMPLE_INTERVAL_S."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import psutil

SAMPLE_INTERVAL_S = 0.5
METRICS_TIMEOUT_S = 2.0
CONNECTIONS_METRIC = "streamhouse_kafka_connections"
PENDING_METRIC = "streamhouse_flush_pending_bytes"


@dataclass
class AgentSample:
    rss_bytes: int
    open_files: int
    kafka_connections: int | None  # None: no /metrics to read


def agent_metric(metrics_url: str | None, name: str) -> int | None:
    """One gauge from the agent's /metrics, or None if it cannot be read."""
    if metrics_url is None:
        return None
    try:
        with urllib.request.urlopen(metrics_url, timeout=METRICS_TIMEOUT_S) as page:
            for line in page.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[1]))
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return None


def kafka_connections(metrics_url: str | None) -> int | None:
    """The agent's own count of open Kafka connections, or None if it cannot be read."""
    return agent_metric(metrics_url, CONNECTIONS_METRIC)


def sample_once(pid: int | None, metrics_url: str | None) -> AgentSample | None:
    """One sample of process `pid` and its children (summed), or None if it is gone."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        rss = sum(process.memory_info().rss for process in processes)
        files = sum(process.num_fds() for process in processes)
    except psutil.Error:
        return None
    return AgentSample(rss, files, kafka_connections(metrics_url))


class AgentSampler:
    """A background thread sampling the agent until stopped; keeps the peak and the last."""

    def __init__(self, pid: int | None, metrics_url: str | None) -> None:
        self._pid = pid
        self._metrics_url = metrics_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agent-sampler", daemon=True)
        self.samples = 0
        self.last: AgentSample | None = None
        self.peak = AgentSample(0, 0, None)

    def __enter__(self) -> AgentSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.record(sample_once(self._pid, self._metrics_url))
            self._stop.wait(SAMPLE_INTERVAL_S)

    def record(self, sample: AgentSample | None) -> None:
        if sample is None:
            return
        self.samples += 1
        self.last = sample
        connections = [c for c in (self.peak.kafka_connections, sample.kafka_connections) if c]
        self.peak = AgentSample(
            max(self.peak.rss_bytes, sample.rss_bytes),
            max(self.peak.open_files, sample.open_files),
            max(connections) if connections else None,
        )

    def as_json(self) -> dict[str, object]:
        last = self.last or AgentSample(0, 0, None)
        return {
            "pid": self._pid,
            "samples": self.samples,
            "sample_interval_s": SAMPLE_INTERVAL_S,
            "rss_peak_bytes": self.peak.rss_bytes,
            "rss_last_bytes": last.rss_bytes,
            "open_files_peak": self.peak.open_files,
            "open_files_last": last.open_files,
            "kafka_connections_peak": self.peak.kafka_connections,
            "kafka_connections_last": last.kafka_connections,
        }
