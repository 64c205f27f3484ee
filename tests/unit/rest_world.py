"""What the REST proxy door's tests share: a real agent in a thread with its REST door on a free
loopback port, and plain HTTP calls to it (the standard library's client, real sockets)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamhouse.agent import open_rest_proxy
from streamhouse.engine.authentication import Authenticator
from streamhouse.server.rest_app import RestDoor
from tests.unit.sasl_world import AgentThread, agent_settings

HTTP_TIMEOUT_S = 30
READ_POLLS_MAX = 60
READ_POLL_S = 0.5
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


def _answer(connection: http.client.HTTPConnection) -> Answer:
    response = connection.getresponse()
    raw = response.read()
    found = {name.lower(): value for name, value in response.getheaders()}
    return Answer(response.status, found, raw)


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
        return _answer(connection)
    finally:
        connection.close()


def call_streaming(port: int, path: str, chunks: list[bytes]) -> Answer:
    """A POST whose body is sent as `chunks` with Transfer-Encoding: chunked."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        connection.request("POST", path, body=iter(chunks), headers=headers, encode_chunked=True)
        return _answer(connection)
    finally:
        connection.close()


def concatenated_json(raw: bytes) -> list[Any]:
    """The documents of a concatenated JSON stream."""
    decoder = json.JSONDecoder()
    text = raw.decode()
    found = []
    position = 0
    while text[position:].strip():
        while text[position].isspace():
            position += 1
        document, position = decoder.raw_decode(text, position)
        found.append(document)
    return found


def read_back(bootstrap: str, topic: str, partition: int, count: int) -> list[Any]:
    """The first `count` records of one partition, read by confluent-kafka from offset 0."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: list[Any] = []
        for _ in range(READ_POLLS_MAX):
            if len(found) >= count:
                break
            message = consumer.poll(READ_POLL_S)
            if message is not None and message.error() is None:
                found.append(message)
        return found
    finally:
        consumer.close()
