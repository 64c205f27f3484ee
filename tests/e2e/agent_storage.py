"""What an e2e agent shows of its storage and background work: the objects in its bucket
(local storage), each partition's storage from its HTTP API, and its unlabelled metrics."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Agent

HTTP_TIMEOUT_S = 20


def bucket_objects(data_dir: Path) -> set[str]:
    """The flushed and rewritten objects in the agent's bucket (local storage)."""
    root = data_dir / "objects" / "orgs"
    return {os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names}


def partition_storage(agent: Agent, topic: str) -> dict[int, dict[str, Any]]:
    """Each partition's storage as GET /api/v1/topics/<topic>/partitions answers it."""
    url = f"{agent.http_base}/api/v1/topics/{topic}/partitions"
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as answer:
        partitions: list[dict[str, Any]] = json.loads(answer.read())["partitions"]
    return {shown["partition"]: shown for shown in partitions}


def agent_metrics(agent: Agent) -> dict[str, float]:
    """The agent's unlabelled samples by name (GET /metrics)."""
    with urllib.request.urlopen(agent.http_base + "/metrics", timeout=HTTP_TIMEOUT_S) as answer:
        text = answer.read().decode()
    samples = (line.split() for line in text.splitlines() if not line.startswith("#"))
    return {fields[0]: float(fields[1]) for fields in samples if len(fields) == 2}
