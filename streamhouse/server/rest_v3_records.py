"""Confluent REST Proxy API v3: POST /v3/clusters/{cluster_id}/topics/{topic}/records.

The body is one record, `{"partition_id", "headers": [{name, value: base64}], "key": {"type":
"BINARY"|"JSON"|"STRING"|"AVRO"|"PROTOBUF"|"JSONSCHEMA", "data", "schema_id"?,
"schema_version"?, "subject"?, "schema"?}, "value": {...}, "timestamp": ISO-8601}`, answered
with its delivery report `{"error_code": 200, "cluster_id", "topic_name", "partition_id",
"offset", "timestamp", "key": {"type", "size", "subject"?, "schema_id"?}, "value": {...}}`, or
a refusal with its HTTP status (the engine's Confluent code for a key or value refused: 40403,
42201, 42202, ...).

The schema formats name their schema as Confluent's v3 does: `schema_id`, `schema_version` of
`subject` (default `<topic>-key` / `<topic>-value`), an inline `schema` (registered under the
subject if absent), or none: the subject's latest. Without a `type`, a key or value that names
a schema is in that schema's format, one that names none is JSON.

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
from streamhouse.engine.embedded_formats import EmbeddedFormat, Part
from streamhouse.engine.produce import Ack, NewRecord, RecordProduced
from streamhouse.server.rest_common import (
    REQUEST_BYTES_MAX,
    V3_CONTENT_TYPE,
    Caller,
    RestError,
    RestServices,
    caller_in,
)
from streamhouse.server.rest_formats import (
    SCHEMA_FORMATS,
    encode,
    schema_format,
    v3_format,
)
from streamhouse.server.rest_produce import (
    ack_of,
    produce,
    record_error_code,
    record_headers,
    writable,
)
from streamhouse.server.rest_v3 import V3_PREFIX, check_cluster, v3_refusal

RECORD_BYTES_MAX = REQUEST_BYTES_MAX  # one record of a stream; a bigger one ends the stream
STREAM_RECORDS_MAX = 1_000_000  # records one stream may carry; past it the stream ends
RECORDS_PER_PRODUCE_MAX = 1_000  # records produced together from what has arrived
OK = 200


@dataclass(frozen=True)
class WrittenPart:
    """How a record's key or value was written: its type name, and the schema (id, subject)
    of a schema format."""

    type_name: str
    schema_id: int | None = None
    subject: str | None = None


@dataclass(frozen=True)
class ReadRecord:
    """One record of the body: what to produce, or why it cannot be."""

    record: NewRecord | None
    key: WrittenPart | None
    value: WrittenPart | None
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
    read = await _read_record(services, caller, topic, document)
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
        reads = [await _read_record(services, caller, topic, document) for document in batch]
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
        "key": _size(read.key, read.record.key),
        "value": _size(read.value, read.record.value),
    }


def _size(written: WrittenPart | None, data: bytes | None) -> dict[str, Any] | None:
    if written is None:
        return None
    found: dict[str, Any] = {"type": written.type_name, "size": 0 if data is None else len(data)}
    if written.schema_id is not None:
        found.update(subject=written.subject, schema_id=written.schema_id)
    return found


def _iso(timestamp_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _read_record(
    services: RestServices, caller: Caller, topic: str, document: Any
) -> ReadRecord:
    """One record of the body as the engine takes it; a refusal (400/404/422) otherwise."""
    try:
        if not isinstance(document, dict):
            raise v3_refusal(400, "a record must be a JSON object")
        partition = document.get("partition_id")
        if partition is not None and (
            not isinstance(partition, int) or isinstance(partition, bool)
        ):
            raise v3_refusal(400, "'partition_id' must be an integer")
        headers = record_headers(document.get("headers"))
        timestamp_ms = _timestamp_ms(document.get("timestamp"))
        key, key_written = await _part(services, caller, topic, document.get("key"), "key")
        value, value_written = await _part(services, caller, topic, document.get("value"), "value")
        record = NewRecord(
            key=key, value=value, headers=headers, partition=partition, timestamp_ms=timestamp_ms
        )
    except RestError as refused:
        return ReadRecord(None, None, None, refused)
    return ReadRecord(record, key_written, value_written)


async def _part(
    services: RestServices, caller: Caller, topic: str, written: Any, part: Part
) -> tuple[bytes | None, WrittenPart | None]:
    """A key's or value's bytes and how it was written (None, None when it is absent).

    As Confluent's v3: a schema by `schema_id`, by `schema_version` (of `subject`, else
    `<topic>-<part>`), inline (`schema`, with its `type`), else the subject's latest; without
    a `type` the format is the named schema's, or JSON when none is named."""
    if written is None:
        return None, None
    if not isinstance(written, dict):
        raise v3_refusal(400, f"'{part}' must be an object with 'type' and 'data'")
    options = _schema_options(written, part)
    type_name = written.get("type")
    if type_name is not None:
        fmt = v3_format(type_name)
    elif "schema" in options:
        raise v3_refusal(400, f"the {part}'s inline 'schema' needs its 'type'")
    elif options:
        fmt = await schema_format(services, caller.org, topic, part, **options)
    else:
        fmt = EmbeddedFormat.JSON
    if fmt not in SCHEMA_FORMATS:
        options = {}  # as Confluent's: the schemaless formats take no schema
    elif "schema" in options:
        try:  # an inline schema is registered: not for a topic the caller cannot write
            await writable(services, caller, topic)
        except RestError as refused:
            raise v3_refusal(refused.status, refused.message) from None
    encoded = await encode(services, caller.org, topic, fmt, part, written.get("data"), **options)
    subject = options.get("subject") or f"{topic}-{part}"
    return encoded.data, WrittenPart(fmt.name, encoded.schema_id, subject)


SCHEMA_OPTIONS: dict[str, type] = {
    "schema": str,
    "schema_id": int,
    "schema_version": int,
    "subject": str,
}
SUBJECT_NAME_STRATEGIES = ("TOPIC_NAME",)  # the record-name strategies are not served


def _schema_options(written: dict[str, Any], part: Part) -> dict[str, Any]:
    """The schema a key or value names, as EmbeddedFormats takes it (400 for a wrong type)."""
    options: dict[str, Any] = {}
    for name, kind in SCHEMA_OPTIONS.items():
        value = written.get(name)
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise v3_refusal(400, f"the {part}'s '{name}' must be {kind.__name__}")
        options[name] = value
    strategy = written.get("subject_name_strategy")
    if strategy is not None and strategy not in SUBJECT_NAME_STRATEGIES:
        raise v3_refusal(
            400,
            f"subject_name_strategy {strategy!r} is not served; name the 'subject' or use "
            + " or ".join(SUBJECT_NAME_STRATEGIES),
        )
    return options


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
