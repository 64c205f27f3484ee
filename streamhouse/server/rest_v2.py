"""Confluent REST Proxy API v2: topic and partition metadata, partition offsets, brokers, and
producing records in an embedded format chosen by Content-Type
(application/vnd.kafka.binary.v2+json, .json, .avro, .protobuf, .jsonschema).

A produce body is `{"records": [{"key", "value", "partition", "headers"}], "key_schema",
"key_schema_id", "value_schema", "value_schema_id"}`; the answer lists each record's
partition and offset (or its error) in the records' order, and the key and value schema ids
used. In a schema format, keys (values) need `key_schema` or `key_schema_id` (42201; 42202
for values), as Confluent's v2 asks; an inline schema is registered under `<topic>-key`
(`-value`) if it is not there yet (engine/embedded_formats.py holds the rules). Topics are
the caller's org's: another org's topic is 40401 like a missing one; listings leave out what
the caller may not DESCRIBE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from streamhouse.engine.admin import TopicDescription
from streamhouse.engine.embedded_formats import EmbeddedFormat, Part
from streamhouse.engine.produce import NewRecord
from streamhouse.errors import StreamHouseError, UnknownTopicOrPartition
from streamhouse.names import TopicPartition
from streamhouse.server.rest_common import (
    UNPROCESSABLE,
    V2_CONTENT_TYPE,
    Caller,
    RestError,
    RestServices,
    body_bytes,
    caller_in,
    content_type,
    engine_refusal,
    field,
    json_object,
    partition_not_found,
    topic_not_found,
)
from streamhouse.server.rest_formats import SCHEMA_FORMATS, encode, v2_format
from streamhouse.server.rest_produce import (
    ack_of,
    produce,
    record_error_code,
    record_headers,
    writable,
)
from streamhouse.tenancy.acls import AclOperation, ResourceType

Op = AclOperation
PARTS: tuple[Part, ...] = ("key", "value")
TOPIC = ResourceType.TOPIC
PRODUCE_DESCRIPTION = (
    "Body: `records` [{key, value, partition?, headers? [{name, value: base64}]}] in the "
    "embedded format of the Content-Type (binary: base64; json: any JSON; avro, protobuf, "
    "jsonschema: JSON of the schema named by `key_schema`/`value_schema` (inline, registered "
    "under <topic>-key/-value) or `key_schema_id`/`value_schema_id`; the answer carries the "
    "ids used). Query parameter `ack=none|leader|durable` (or header `X-Streamhouse-Ack`; "
    "default durable)."
)


def _answer(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=V2_CONTENT_TYPE)


def install_v2(app: FastAPI, services: RestServices) -> None:
    """The v2 metadata and produce routes."""
    _metadata_routes(app, services)
    _produce_routes(app, services)


async def _described(services: RestServices, caller: Caller, name: str) -> TopicDescription:
    """The caller's topic: 403 without DESCRIBE, 40401 when it has none of that name."""
    caller.require(Op.DESCRIBE, TOPIC, name)
    try:
        topic = await services.admin.topic(caller.internal(name))
        return await services.admin.describe_topic(topic)
    except UnknownTopicOrPartition:
        raise topic_not_found(name) from None
    except StreamHouseError as error:
        raise engine_refusal(error, name) from None


def _partition_body(partition: int, leader: int) -> dict[str, Any]:
    replica = {"broker": leader, "leader": True, "in_sync": True}
    return {"partition": partition, "leader": leader, "replicas": [replica]}


def _one_partition(described: TopicDescription, name: str, partition: int) -> dict[str, Any]:
    for shown in described.partitions:
        if shown.partition == partition:
            return _partition_body(partition, shown.leader_node)
    raise partition_not_found(name, partition)


def _metadata_routes(app: FastAPI, services: RestServices) -> None:
    @app.get("/topics", tags=["v2"], summary="The caller's topic names")
    async def topics(request: Request) -> JSONResponse:
        caller = caller_in(request)
        names = []
        for topic in await services.admin.list_topics():
            name = caller.shown(topic.name)
            if name is not None and caller.may(Op.DESCRIBE, TOPIC, name):
                names.append(name)
        return _answer(sorted(names))

    @app.get("/topics/{topic}", tags=["v2"], summary="A topic, its configs and partitions")
    async def topic(request: Request, topic: str) -> JSONResponse:
        caller = caller_in(request)
        described = await _described(services, caller, topic)
        configs = await services.admin.describe_configs(caller.internal(topic))
        body = {
            "name": topic,
            "configs": {entry.name: entry.value for entry in configs},
            "partitions": [
                _partition_body(p.partition, p.leader_node) for p in described.partitions
            ],
        }
        return _answer(body)

    @app.get("/topics/{topic}/partitions", tags=["v2"], summary="A topic's partitions")
    async def partitions(request: Request, topic: str) -> JSONResponse:
        described = await _described(services, caller_in(request), topic)
        return _answer([_partition_body(p.partition, p.leader_node) for p in described.partitions])

    @app.get("/topics/{topic}/partitions/{partition}", tags=["v2"], summary="One partition")
    async def partition(request: Request, topic: str, partition: int) -> JSONResponse:
        described = await _described(services, caller_in(request), topic)
        return _answer(_one_partition(described, topic, partition))

    @app.get(
        "/topics/{topic}/partitions/{partition}/offsets",
        tags=["v2"],
        summary="Where a partition's log begins and ends",
    )
    async def offsets(request: Request, topic: str, partition: int) -> JSONResponse:
        caller = caller_in(request)
        _one_partition(await _described(services, caller, topic), topic, partition)
        try:
            found = await services.fetch.offsets(TopicPartition(caller.internal(topic), partition))
        except UnknownTopicOrPartition:
            raise partition_not_found(topic, partition) from None
        except StreamHouseError as error:
            raise engine_refusal(error, topic) from None
        return _answer(
            {"beginning_offset": found.log_start_offset, "end_offset": found.high_watermark}
        )

    @app.get("/brokers", tags=["v2"], summary="The agents' broker ids")
    async def brokers() -> JSONResponse:
        agents = services.admin.describe_cluster().agents
        return _answer({"brokers": [agent.node_id for agent in agents]})


KEY_SCHEMA_MISSING = 42201  # Confluent v2: keys in a schema format, no key_schema(_id)
VALUE_SCHEMA_MISSING = 42202


@dataclass
class _PartSchema:
    """The schema a v2 body names for its keys or its values: inline text or an id; once a
    record has been written with it, the id it got (the rest of the records use that)."""

    part: Part
    text: str | None
    schema_id: int | None

    @staticmethod
    def of(document: dict[str, Any], part: Part) -> _PartSchema:
        text = field(document, f"{part}_schema", str)
        written_id = field(document, f"{part}_schema_id", (int, str))
        if isinstance(written_id, str):  # Confluent takes the id as a JSON string too
            if not written_id.isdigit():
                raise RestError(
                    UNPROCESSABLE, UNPROCESSABLE, f"'{part}_schema_id' must be a schema id"
                )
            written_id = int(written_id)
        return _PartSchema(part, text, written_id)

    @property
    def named(self) -> bool:
        return self.text is not None or self.schema_id is not None

    def options(self) -> dict[str, Any]:
        """The EmbeddedFormats.encode options of the next record."""
        if self.text is not None and self.schema_id is None:
            return {"schema": self.text}
        return {"schema_id": self.schema_id, "schema": self.text}

    def used(self, schema_id: int | None) -> None:
        if schema_id is not None and self.text is not None:
            self.schema_id, self.text = schema_id, None


async def _new_records(
    services: RestServices,
    caller: Caller,
    topic: str,
    document: dict[str, Any],
    fmt: EmbeddedFormat,
    partition: int | None,
) -> tuple[list[NewRecord], int | None, int | None]:
    """The body's records as the engine takes them, and the key and value schema ids used."""
    items = field(document, "records", list)
    if not items:
        raise RestError(UNPROCESSABLE, UNPROCESSABLE, "the body needs a non-empty 'records' list")
    schemas = {part: _PartSchema.of(document, part) for part in PARTS}
    if fmt in SCHEMA_FORMATS and any(schema.text is not None for schema in schemas.values()):
        await writable(services, caller, topic)  # nothing registered for a topic it cannot write
    records = []
    for item in items:
        if not isinstance(item, dict):
            raise RestError(UNPROCESSABLE, UNPROCESSABLE, "each record must be a JSON object")
        chosen = field(item, "partition", int)
        parts: dict[str, bytes | None] = {}
        for part, schema in schemas.items():
            data = item.get(part)
            options: dict[str, Any] = {}
            if fmt in SCHEMA_FORMATS:
                if data is not None and not schema.named:
                    code = KEY_SCHEMA_MISSING if part == "key" else VALUE_SCHEMA_MISSING
                    raise RestError(
                        UNPROCESSABLE,
                        code,
                        f"Request includes {part}s but does not include {part}_schema or "
                        f"{part}_schema_id",
                    )
                options = schema.options()
            encoded = await encode(services, caller.org, topic, fmt, part, data, **options)
            schema.used(encoded.schema_id)
            parts[part] = encoded.data
        records.append(
            NewRecord(
                key=parts["key"],
                value=parts["value"],
                headers=record_headers(item.get("headers"), UNPROCESSABLE),
                partition=partition if partition is not None else chosen,
            )
        )
    if fmt not in SCHEMA_FORMATS:
        return records, None, None
    return records, schemas["key"].schema_id, schemas["value"].schema_id


def _produce_routes(app: FastAPI, services: RestServices) -> None:
    async def produce_to(request: Request, topic: str, partition: int | None) -> JSONResponse:
        fmt = v2_format(content_type(request))
        ack = ack_of(request)
        document = json_object(await body_bytes(request))
        caller = caller_in(request)
        records, key_id, value_id = await _new_records(
            services, caller, topic, document, fmt, partition
        )
        produced = await produce(services, caller, topic, records, ack)
        offsets = [
            {
                "partition": p.partition,
                "offset": p.offset,
                "error_code": None if p.error is None else record_error_code(p.error),
                "error": None if p.error is None else str(p.error),
            }
            for p in produced
        ]
        return _answer({"key_schema_id": key_id, "value_schema_id": value_id, "offsets": offsets})

    @app.post(
        "/topics/{topic}",
        tags=["v2"],
        summary="Produce records to a topic",
        description=PRODUCE_DESCRIPTION,
    )
    async def produce_topic(request: Request, topic: str) -> JSONResponse:
        return await produce_to(request, topic, None)

    @app.post(
        "/topics/{topic}/partitions/{partition}",
        tags=["v2"],
        summary="Produce records to one partition",
        description=PRODUCE_DESCRIPTION,
    )
    async def produce_partition(request: Request, topic: str, partition: int) -> JSONResponse:
        return await produce_to(request, topic, partition)
