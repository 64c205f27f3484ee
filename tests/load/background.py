"""The load's background connections: the C load generator's `many` mode (bench/loadgen.c; raw
Produce requests, one record each, over many sockets from one thread, no metadata requests) on a
side topic, holding the connection count up while the measured clients run."""

from __future__ import annotations

import subprocess
from typing import Any

from bench import loadgen

SIDE_TOPIC_PARTITIONS = 8
VALUE_BYTES = 100
WARMUP_S = 1.0  # the generator's own warm-up: its first requests are not in its latencies
DRAIN_S = 30.0
ACKS = "1"
RESULT_TIMEOUT_S = 60.0  # after its run time: the generator drains within DRAIN_S


class Background:
    """`connections` producer connections, `rate` requests a second each, for `seconds`."""

    def __init__(self, bootstrap: str, topic: str, connections: int, rate: float, seconds: float):
        self.connections = connections
        self.seconds = seconds
        self._line = loadgen.command(
            "many",
            bootstrap,
            topic,
            acks=ACKS,
            partitions=SIDE_TOPIC_PARTITIONS,
            value_bytes=VALUE_BYTES,
            connections=connections,
            rate=rate,
            warmup_s=WARMUP_S,
            seconds=seconds,
            drain_s=DRAIN_S,
        )
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if self.connections <= 0:
            return
        self._process = subprocess.Popen(
            self._line, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(self) -> dict[str, Any] | None:
        """The generator's report once it ends (killed if it outlives its bound)."""
        if self._process is None:
            return None
        try:
            stdout, stderr = self._process.communicate(
                timeout=WARMUP_S + self.seconds + DRAIN_S + RESULT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            self._process.kill()
            stdout, stderr = self._process.communicate()
        return loadgen.parse(stdout, stderr, self._process.returncode, self._line)

    def stop(self) -> None:
        """Kill it if it is still running (the run failed before its end)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
