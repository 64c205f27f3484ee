"""The agent's failure signal, and the Kafka listener reporting into it: our own bug on the
request path fails the agent (no connection is served after it), a remote fault is answered
with its error code and the agent serves on."""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pytest

from streamhouse.agent import open_agent
from streamhouse.config import Settings
from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.names import TopicPartition
from streamhouse.server import kafka_handlers
from streamhouse.server.kafka_context import Completion, KafkaContext
from tests.fixtures.kafka_wire import (
    GOLDEN_BATCH,
    GOLDEN_METADATA_V8,
    GOLDEN_PRODUCE_V9,
    api_versions_request,
    decode_response,
    request_frame,
    split_response,
)

WAIT_S = 10
BROKEN = "invariant broken on purpose by the test"
API_VERSIONS_V3 = request_frame(api_versions_request(3))


# --- the signal ------------------------------------------------------------------------------


def test_the_first_report_fails_the_agent_logs_its_traceback_and_tells_every_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        failure = AgentFailure()
        told: list[BaseException] = []
        failure.on_failure(told.append)
        first, second = AssertionError("first"), KeyError("second")
        for error, where in ((first, "the produce handler"), (second, "the flusher")):
            try:
                raise error
            except (AssertionError, KeyError) as raised:
                failure.report(raised, where)
        assert failure.failed and failure.error is first and told == [first]  # at once
        assert await asyncio.wait_for(failure.wait(), WAIT_S) is first
        late: list[BaseException] = []
        failure.on_failure(late.append)
        assert late == [first]

    with caplog.at_level(logging.CRITICAL, logger="streamhouse.agent"):
        asyncio.run(main())
    first_record, second_record = caplog.records
    assert "the produce handler" in first_record.getMessage()
    assert first_record.exc_text and "AssertionError: first" in first_record.exc_text
    assert "has failed already" in second_record.getMessage()


def test_a_watched_service_fails_the_agent_unless_cancelled_or_stopping() -> None:
    async def returns() -> None:
        return None

    async def raises() -> None:
        raise AssertionError(BROKEN)

    async def main() -> None:
        quiet = AgentFailure()
        cancelled = asyncio.ensure_future(asyncio.sleep(WAIT_S))
        quiet.watch(cancelled)
        quiet.watch(asyncio.ensure_future(returns()), stopping=lambda: True)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        assert not quiet.failed
        ended = AgentFailure()
        ended.watch(asyncio.create_task(returns(), name="lease-keeper"))
        error = await asyncio.wait_for(ended.wait(), WAIT_S)
        assert isinstance(error, RuntimeError) and "lease-keeper stopped on its own" in str(error)
        died = AgentFailure()
        died.watch(asyncio.ensure_future(raises()))
        assert BROKEN in str(await asyncio.wait_for(died.wait(), WAIT_S))

    asyncio.run(main())


# --- the Kafka listener ----------------------------------------------------------------------


async def _broken_metadata(ctx: KafkaContext, request: Request) -> Completion:
    raise AssertionError(BROKEN)


async def _refused_api_versions(ctx: KafkaContext, request: Request) -> Completion:
    raise StreamHouseError("refused on purpose by the test", ErrorCode.INVALID_REQUEST)


async def _response(reader: asyncio.StreamReader) -> bytes:
    """One response frame, or b"" if the agent closed the connection first."""
    try:
        prefix = await asyncio.wait_for(reader.readexactly(4), WAIT_S)
    except asyncio.IncompleteReadError as closed:
        assert closed.partial == b""
        return b""
    (size,) = struct.unpack(">i", prefix)
    return prefix + await asyncio.wait_for(reader.readexactly(size), WAIT_S)


async def _call(port: int, *frames: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(frames))
    return reader, writer


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=str(tmp_path / "data"), kafka_port=0)


def test_a_handler_bug_fails_the_agent_and_nothing_is_served_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(kafka_handlers.HANDLERS, ApiKey.METADATA, _broken_metadata)

    async def main() -> None:
        agent = await open_agent(_settings(tmp_path))
        orders = TopicPartition("orders", 0)
        await agent.admin.create_topic(orders.topic, 1)
        await (await agent.log.append(orders, GOLDEN_BATCH, durable=False)).synced  # led here
        bystander, bystander_writer = await _call(agent.kafka_port, API_VERSIONS_V3)
        assert await _response(bystander)  # served before the failure
        # what follows the broken Metadata on its connection is neither answered nor appended
        culprit, _ = await _call(
            agent.kafka_port, GOLDEN_METADATA_V8, GOLDEN_PRODUCE_V9, API_VERSIONS_V3
        )
        error = await asyncio.wait_for(agent.failure.wait(), WAIT_S)
        assert isinstance(error, AssertionError) and BROKEN in str(error)
        assert await _response(culprit) == b""
        assert (await agent.log.partition(orders)).state.log_end_offset == 1
        bystander_writer.write(API_VERSIONS_V3)
        assert await _response(bystander) == b""  # closed, unanswered
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", agent.kafka_port)
        await agent.close()

    asyncio.run(main())


def test_a_remote_fault_from_a_handler_is_answered_and_the_agent_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(kafka_handlers.HANDLERS, ApiKey.API_VERSIONS, _refused_api_versions)

    async def main() -> None:
        agent = await open_agent(_settings(tmp_path))
        reader, writer = await _call(agent.kafka_port, API_VERSIONS_V3, GOLDEN_METADATA_V8)
        refused, metadata = await _response(reader), await _response(reader)
        _, body, _ = split_response(refused, flexible_header=False)
        assert decode_response(ApiKey.API_VERSIONS, 3, body).error_code == ErrorCode.INVALID_REQUEST
        _, body, _ = split_response(metadata, flexible_header=False)
        assert decode_response(ApiKey.METADATA, 8, body).topics[0].name == "orders"
        assert not agent.failure.failed
        writer.close()
        await agent.close()

    asyncio.run(main())
