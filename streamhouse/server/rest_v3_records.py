"""Confluent REST Proxy API v3: POST /v3/clusters/{cluster_id}/topics/{topic}/records.

The body is one record, `{"partition_id", "headers": [{name, value: base64}], "key": {"type":
"BINARY"|"JSON"|"STRING", "data"}, "value": {...}, "timestamp": ISO-8601}` (a key or value
without a type is JSON), answered with its delivery report
`{"error_code": 200, "cluster_id", "topic_name", "partition_id", "offset", "timestamp",
"key": {"type", "size"}, "value": {...}}`, or a refusal with its HTTP status.

Streaming mode (Confluent's): a body of concatenated JSON records, typically sent with
`Transfer-Encoding: chunked` over a connection kept open, is answered 200 with a stream of
concatenated delivery reports, one per record in the records' order, each with its own
error_code. The records that have arrived whole are produced together, so a partition's
records keep their order; a record that cannot be read (not JSON, bigger than
RECORD_BYTES_MAX) ends the stream with one last report naming the problem.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from streamhouse.engine.cluster import CLUSTER_ID
from streamhouse.engine.produce import Ack, NewRecord, RecordProduced
from streamhouse.server.rest_common import (
    REQUEST_BYTES_MAX,
    V3_CONTENT_TYPE,
    Caller,
    RestError,
    RestServices,
    caller_in,
)
from streamhouse.server.rest_formats import EmbeddedFormat, encode, v3_format
from streamhouse.server.rest_produce import ack_of, produce, record_error_code, record_headers
from streamhouse.server.rest_v3 import V3_PREFIX, check_cluster, v3_refusal

RECORD_BYTES_MAX = REQUEST_BYTES_MAX  # one record of a stream; a bigger one ends the stream
STREAM_RECORDS_MAX = 1_000_000  # records one stream may carry; past it the stream ends
RECORDS_PER_PRODUCE_MAX = 1_000  # records produced together from what has arrived
OK = 200


@dataclass(frozen=True)
class ReadRecord:
    """One record of the body: what to produce, or why it cannot be."""

    record: NewRecord | None
    key_type: str | None
    value_type: str | None
    refusal: RestError | None = None


def install_v3_records(app: FastAPI, services: RestServices) -> None:
    @app.post(
        V3_PREFIX + "/topics/{topic_name}/records",
        tags=["v3"],
        summary="Produce records; one delivery report per record (streaming mode too)",
        description=__doc__,
    )
    async def records(request: Request, cluster_id: str, topic_name: str) -> Any:
        check_cluster(cluster_id)
        caller = caller_in(request)
        ack = ack_of(request)
        stream = _Documents(request)
        first = await stream.next_batch()
        if not first:
            raise v3_refusal(400, "the body holds no record")
        streaming = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if len(first) == 1 and not streaming and await stream.finished():
            return await _single(services, caller, topic_name, first[0], ack)
        # the caller's right and the topic are checked before the answer starts: a refusal
        # of the whole stream still has its own HTTP status
        await _produce(services, caller, topic_name, [], ack)
        reports = _reports(services, caller, topic_name, ack, first, stream)
        return StreamingResponse(reports, media_type=V3_CONTENT_TYPE)


async def _single(
    services: RestServices, caller: Caller, topic: str, document: Any, ack: Ack
) -> JSONResponse:
    read = _read_record(document)
    if read.refusal is not None:
        raise read.refusal
    assert read.record is not None
    (produced,) = await _produce(services, caller, topic, [read.record], ack)
    report = _report(topic, read, produced)
    if produced.error is not None:
        code = report["error_code"]
        raise RestError(code // 100, code, str(produced.error))
    return JSONResponse(report, media_type=V3_CONTENT_TYPE)


async def _reports(
    services: RestServices,
    caller: Caller,
    topic: str,
    ack: Ack,
    first: list[Any],
    stream: _Documents,
) -> AsyncIterator[bytes]:
    batch: list[Any] | None = first
    produced_count = 0
    while batch:
        reads = [_read_record(document) for document in batch]
        wanted = [read.record for read in reads if read.record is not None]
        try:
            results = iter(await _produce(services, caller, topic, wanted, ack) if wanted else [])
        except RestError as refused:  # the topic went away, a partition it does not have
            yield _encoded(refused.body())
            return
        for read in reads:
            if read.refusal is not None:
                yield _encoded(read.refusal.body())
            else:
                yield _encoded(_report(topic, read, next(results)))
        produced_count += len(batch)
        if produced_count >= STREAM_RECORDS_MAX:
            yield _encoded({"error_code": 413, "message": f"over {STREAM_RECORDS_MAX} records"})
            return
        try:
            batch = await stream.next_batch()
        except RestError as unreadable:
            yield _encoded(unreadable.body())
            return


async def _produce(
    services: RestServices, caller: Caller, topic: str, records: list[NewRecord], ack: Ack
) -> list[RecordProduced]:
    """The shared produce step, its refusals with v3's codes (the HTTP status)."""
    try:
        return await produce(services, caller, topic, records, ack)
    except RestError as refused:
        raise v3_refusal(refused.status, refused.message) from None


def _encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _report(topic: str, read: ReadRecord, produced: RecordProduced) -> dict[str, Any]:
    """A delivery report (`error_code` 200, or the record's refusal)."""
    assert read.record is not None
    if produced.error is not None:
        return {"error_code": record_error_code(produced.error), "message": str(produced.error)}
    return {
        "error_code": OK,
        "cluster_id": CLUSTER_ID,
        "topic_name": topic,
        "partition_id": produced.partition,
        "offset": produced.offset,
        "timestamp": _iso(produced.timestamp_ms),
        "key": _size(read.key_type, read.record.key),
        "value": _size(read.value_type, read.record.value),
    }


def _size(type_name: str | None, data: bytes | None) -> dict[str, Any] | None:
    if type_name is None:
        return None
    return {"type": type_name, "size": 0 if data is None else len(data)}


def _iso(timestamp_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _read_record(document: Any) -> ReadRecord:
    """One record of the body as the engine takes it; a refusal (400/422) otherwise."""
    try:
        if not isinstance(document, dict):
            raise v3_refusal(400, "a record must be a JSON object")
        partition = document.get("partition_id")
        if partition is not None and (
            not isinstance(partition, int) or isinstance(partition, bool)
        ):
            raise v3_refusal(400, "'partition_id' must be an integer")
        key, key_type = _part(document.get("key"), "key")
        value, value_type = _part(document.get("value"), "value")
        record = NewRecord(
            key=key,
            value=value,
            headers=record_headers(document.get("headers")),
            partition=partition,
            timestamp_ms=_timestamp_ms(document.get("timestamp")),
        )
    except RestError as refused:
        return ReadRecord(None, None, None, refused)
    return ReadRecord(record, key_type, value_type)


def _part(written: Any, part: str) -> tuple[bytes | None, str | None]:
    """A key's or value's bytes and its type name (None, None when it is absent)."""
    if written is None:
        return None, None
    if not isinstance(written, dict):
        raise v3_refusal(400, f"'{part}' must be an object with 'type' and 'data'")
    fmt = v3_format(written.get("type", EmbeddedFormat.JSON.value.upper()))
    return encode(fmt, part, written.get("data")), fmt.value.upper()


def _timestamp_ms(written: Any) -> int | None:
    if written is None:
        return None
    if not isinstance(written, str):
        raise v3_refusal(400, "'timestamp' must be an ISO-8601 date-time string")
    try:
        moment = datetime.datetime.fromisoformat(written)
    except ValueError:
        raise v3_refusal(400, f"'timestamp' {written!r} is not an ISO-8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


class _Documents:
    """The body as concatenated JSON documents, read as they arrive: each batch is the
    documents complete so far (at most RECORDS_PER_PRODUCE_MAX)."""

    def __init__(self, request: Request) -> None:
        self._chunks = request.stream().__aiter__()
        self._buffer = ""
        self._pending = b""  # bytes of a UTF-8 character split across chunks
        self._ended = False
        self._decoder = json.JSONDecoder()

    async def finished(self) -> bool:
        """Whether the body ended with nothing more than white space after what was read."""
        while not self._ended and not self._buffer.strip():
            await self._read_chunk()
        return self._ended and not self._buffer.strip()

    async def next_batch(self) -> list[Any]:
        """The next documents complete in the body (empty at its end); 400 for one that is
        not JSON, 413 for one over RECORD_BYTES_MAX."""
        while True:
            found = self._complete_documents()
            if found or self._ended:
                if not found and self._buffer.strip():
                    raise v3_refusal(400, "the body ends inside a record: not JSON")
                return found
            await self._read_chunk()

    async def _read_chunk(self) -> None:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._ended = True
            return
        data = self._pending + chunk
        try:
            text = data.decode()
            self._pending = b""
        except UnicodeDecodeError as error:
            if error.start < len(data) - 3:
                raise v3_refusal(400, "the body is not UTF-8") from None
            text, self._pending = data[: error.start].decode(), data[error.start :]
        self._buffer += text
        if len(self._buffer) > RECORD_BYTES_MAX:
            raise v3_refusal(413, f"a record is larger than {RECORD_BYTES_MAX} bytes")

    def _complete_documents(self) -> list[Any]:
        found: list[Any] = []
        while len(found) < RECORDS_PER_PRODUCE_MAX:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                break
            try:
                document, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError as error:
                if not self._ended:  # the rest may still come; RECORD_BYTES_MAX bounds the wait
                    self._buffer = text
                    break
                raise v3_refusal(400, f"the body is not JSON: {error}") from None
            except RecursionError:
                raise v3_refusal(400, "the body nests too deeply") from None
            found.append(document)
            self._buffer = text[end:]
        return found
