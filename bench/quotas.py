"""Quota benchmark: how closely a throttled producer tracks its producer_byte_rate.

One agent process (PLAINTEXT, the default org); a client-id quota set through the HTTP API;
one confluent-kafka producer sending as fast as it may. Kafka's rate lets a young client send
10 s of its quota at once, and forgets samples 11 s old, so the rate is measured only after a
warm-up past that span: bytes acknowledged per second over the measured span, over the quota
(1.0 is perfect tracking; the throttle bounds it from above, the client's pauses from below).
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streamhouse.testing.agent_process import AgentProcess, start_agent_process

QUOTAS_BYTES_PER_S = (50_000, 200_000)
WARMUP_S = 12.0  # past the 11 windows of 1 s the rate spans
# Kafka's sampled rate forgets a whole 1 s sample at a time, so the throttled rate swings
# around the quota over tens of seconds: a short span over- or understates the tracking
MEASURED_S = 48.0
VALUE_BYTES = 1_000
REQUEST_BYTES = 16_384  # batch.size: the throttle holds back the next request
POLL_S = 0.01
QUEUED_MAX = 1_000
HTTP_TIMEOUT_S = 30


def run() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-quotas-") as scratch,
        start_agent_process(Path(scratch) / "data") as agent,
    ):
        results = {
            f"producer_byte_rate_{quota}": _track(agent, quota) for quota in QUOTAS_BYTES_PER_S
        }
        agent.stop_cleanly()
        return results


def _set_quota(agent: AgentProcess, client_id: str, quota: int) -> None:
    body = {"entity": {"client-id": client_id}, "set": {"producer_byte_rate": quota}}
    request = urllib.request.Request(
        f"{agent.http_base}/api/v1/orgs/default/quotas",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
        assert answer.status == 200, answer.status


def _track(agent: AgentProcess, quota: int) -> dict[str, Any]:
    client_id = f"bench-{quota}"
    _set_quota(agent, client_id, quota)
    acked: list[tuple[float, int]] = []  # (when, bytes)
    throttles_ms = [0]
    producer = Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{agent.port}",
            "client.id": client_id,
            "linger.ms": 5,
            "batch.size": REQUEST_BYTES,
            "queue.buffering.max.messages": QUEUED_MAX,  # the rest waits in the loop
            "throttle_cb": lambda event: throttles_ms.append(int(event.throttle_time * 1000)),
        }
    )

    def delivered(error: Any, message: Any) -> None:
        if error is None:
            acked.append((time.monotonic(), len(message.value())))

    value = b"b" * VALUE_BYTES
    started = time.monotonic()
    end = started + WARMUP_S + MEASURED_S
    while time.monotonic() < end:
        try:
            producer.produce("bench-quotas", value, on_delivery=delivered)
        except BufferError:
            producer.poll(POLL_S)
        producer.poll(0)
    producer.purge()  # what is still queued would only be throttled: the span is over
    producer.flush(HTTP_TIMEOUT_S)
    window_start = started + WARMUP_S
    measured = sum(size for when, size in acked if window_start <= when < end)
    observed = measured / MEASURED_S
    return {
        "quota_bytes_per_s": quota,
        "observed_bytes_per_s": round(observed),
        "observed_over_quota": round(observed / quota, 3),
        "throttle_ms_max": max(throttles_ms),
        "measured_s": MEASURED_S,
    }
