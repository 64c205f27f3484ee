"""What the REST proxy door's tests share: a real agent in a thread with its REST door on a free
loopback port, and plain HTTP calls to it (the standard library's client, real sockets)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamhouse.agent import open_rest_proxy
from streamhouse.engine.authentication import Authenticator
from streamhouse.server.rest_app import RestDoor
from tests.unit.sasl_world import AgentThread, agent_settings

HTTP_TIMEOUT_S = 30
V2_JSON = "application/vnd.kafka.v2+json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"
V2_EMBEDDED_JSON = "application/vnd.kafka.json.v2+json"


def start_rest_agent(
    directory: Path, authenticator: Authenticator | None = None, protocol: str = "PLAINTEXT"
) -> AgentThread:
    """An agent and its REST door, served from a thread; stop() closes both."""
    settings = agent_settings(directory, protocol).with_overrides(rest_proxy_port=0)
    return AgentThread(settings, authenticator, door_openers=(open_rest_proxy,)).start()


def rest_port(agent: AgentThread) -> int:
    door = agent.doors[0]
    assert isinstance(door, RestDoor)
    return door.port


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, headers (lower-case names), body as sent and as JSON."""

    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a fresh connection; `body`: bytes as they are, anything else as JSON."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        sent_headers = dict(headers or {})
        payload: bytes | None = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            sent_headers.setdefault("Content-Type", content_type)
        connection.request(method, path, body=payload, headers=sent_headers)
        response = connection.getresponse()
        raw = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, found, raw)
    finally:
        connection.close()
