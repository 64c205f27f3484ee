"""The embedded formats of Confluent's REST Proxy: a record part given as JSON (binary, json,
avro, protobuf, jsonschema) to the bytes a Kafka client would have produced, and back for
consumers. The REST and gRPC doors both call this service.

binary is base64 text of the bytes; json is any JSON value, written as JSON text; string (REST
v3's STRING) is text, written as UTF-8. The three
schema formats resolve a schema in the caller's org (engine.org_registry), as REST Proxy v2/v3
do, under the subject TopicNameStrategy names (`<topic>-key` / `<topic>-value`, the topic as the
org names it) unless one is named:
- an inline schema is looked up under the subject and registered there if absent (the usual
  compatibility rules apply), and its id used;
- a schema id must name a schema the org can see, of the format's type;
- a schema version picks that version of the subject;
- none of them: the subject's latest version.
The value is checked against the schema and written in Confluent's wire format (magic byte 0,
the schema id, for Protobuf the message indexes, then the datum), so Confluent's own
deserializers read it. A null value is a null record part for every format.

Parsed schemas are kept per id (their content never changes), bounded; the registry is still
asked per request whether the org may see the id, or once per `VisibleSchemas` a caller keeps
for the records of one request (a consumer's batch).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from streamhouse.engine.org_registry import OrgRegistry
from streamhouse.engine.schema_registry import (
    INVALID_SCHEMA,
    SCHEMA_NOT_FOUND,
    SUBJECT_NOT_FOUND,
    VERSION_NOT_FOUND,
    RegistryError,
    SchemaRegistry,
    SchemaRequest,
)
from streamhouse.errors import Blame, ErrorCode, StreamHouseError
from streamhouse.schemas import DatumMismatch, SchemaType, UndecodableDatum
from streamhouse.schemas.datum_codecs import DatumCodec
from streamhouse.schemas.wire_format import WireFormatError, frame, unframe

ENCODED_PART_BYTES_MAX = 1024 * 1024  # a key or value as written (Kafka's default record bound)
CODECS_MAX = 256  # schemas kept parsed, by id
VISIBLE_SCHEMAS_MAX = 64  # ids one VisibleSchemas remembers
LATEST = "latest"

Part = Literal["key", "value"]


class EmbeddedFormat(enum.Enum):
    BINARY = "binary"
    JSON = "json"
    STRING = "string"
    AVRO = "avro"
    PROTOBUF = "protobuf"
    JSONSCHEMA = "jsonschema"

    @property
    def schema_type(self) -> SchemaType | None:
        """The registry type of the format's schemas; None for the formats without one."""
        return _SCHEMA_TYPES.get(self)


_SCHEMA_TYPES = {
    EmbeddedFormat.AVRO: SchemaType.AVRO,
    EmbeddedFormat.PROTOBUF: SchemaType.PROTOBUF,
    EmbeddedFormat.JSONSCHEMA: SchemaType.JSON,
}


# --- refusals: each carries the Confluent error code the doors answer with ------------------


class EmbeddedFormatError(StreamHouseError):
    """A record part that cannot be encoded or decoded; `error_code` is Confluent's code (its
    first three digits are the HTTP status)."""

    code = ErrorCode.INVALID_RECORD
    blame = Blame.REMOTE
    error_code = 40000

    def __init__(self, message: str, error_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code

    @property
    def status(self) -> int:
        return int(str(self.error_code)[:3])


class SchemaNotFound(EmbeddedFormatError):
    """No schema of that id, subject or version that the org can see (40403, or the
    registry's 40401 / 40402 for a subject or version)."""

    error_code = SCHEMA_NOT_FOUND


class SchemaInvalid(EmbeddedFormatError):
    """The schema given does not parse, or is not of the format's type."""

    error_code = INVALID_SCHEMA


class RecordMismatch(EmbeddedFormatError):
    """The data does not match its schema (or, for binary, is not base64)."""

    error_code = 42202


class UndecodableRecord(EmbeddedFormatError):
    """A stored record part cannot be read in the format asked for."""

    error_code = 42203


class EmbeddedRequestInvalid(EmbeddedFormatError):
    """The options contradict each other (say, both a schema and a schema id)."""

    error_code = 40000


class RecordPartTooLarge(EmbeddedFormatError):
    """The encoded key or value is larger than ENCODED_PART_BYTES_MAX."""

    code = ErrorCode.MESSAGE_TOO_LARGE
    error_code = 41300


class SchemaRegistryRefused(EmbeddedFormatError):
    """The registry refused to register the inline schema (incompatible, read-only, ...);
    the registry's own code and message."""


class VisibleSchemas:
    """The schema ids one org was found to see, kept by a caller for the records of one request
    so that decoding them asks the registry once per id (at most VISIBLE_SCHEMAS_MAX ids; the
    oldest is forgotten and asked again)."""

    def __init__(self, org: str) -> None:
        self.org = org
        self._ids: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, schema_id: object) -> bool:
        return schema_id in self._ids

    def add(self, schema_id: int) -> None:
        self._ids[schema_id] = None
        self._ids.move_to_end(schema_id)
        if len(self._ids) > VISIBLE_SCHEMAS_MAX:
            self._ids.popitem(last=False)


@dataclass(frozen=True)
class EncodedPart:
    """A key or value as written to the topic, and the id of the schema it was written with."""

    data: bytes | None
    schema_id: int | None


class EmbeddedFormats:
    """Record parts in REST Proxy's embedded formats, through the registry of each caller's org."""

    def __init__(
        self, registry: SchemaRegistry, *, encoded_part_bytes_max: int = ENCODED_PART_BYTES_MAX
    ) -> None:
        self._registry = registry
        self._encoded_part_bytes_max = encoded_part_bytes_max
        self._codecs: OrderedDict[int, DatumCodec] = OrderedDict()

    async def encode(
        self,
        org: str,
        topic: str,
        fmt: EmbeddedFormat,
        part: Part,
        data: Any,
        *,
        schema: str | None = None,
        schema_id: int | None = None,
        schema_version: int | None = None,
        subject: str | None = None,
        message_name: str | None = None,
    ) -> EncodedPart:
        """`data` (a JSON value; base64 text for binary; None for a null part) as the bytes of
        `topic`'s `part`. `message_name` picks a Protobuf message other than the first."""
        if data is None:
            return EncodedPart(None, None)
        if fmt == EmbeddedFormat.BINARY:
            return EncodedPart(self._bounded(part, _base64_bytes(part, data)), None)
        if fmt == EmbeddedFormat.JSON:
            return EncodedPart(self._bounded(part, _json_bytes(data)), None)
        if fmt == EmbeddedFormat.STRING:
            return EncodedPart(self._bounded(part, _text_bytes(part, data)), None)
        if message_name is not None and fmt != EmbeddedFormat.PROTOBUF:
            raise EmbeddedRequestInvalid(f"Only protobuf names a message; {fmt.value} does not")
        registry = OrgRegistry(self._registry, org)
        chosen = await self._schema_id(
            registry, fmt, subject or f"{topic}-{part}", schema, schema_id, schema_version
        )
        codec = await self._codec(registry, fmt, chosen)
        try:
            body = codec.encode(data, message_name)
        except DatumMismatch as mismatch:
            raise RecordMismatch(f"The {part} does not match schema {chosen}: {mismatch}") from None
        return EncodedPart(self._bounded(part, frame(chosen, body)), chosen)

    async def decode(
        self,
        org: str,
        fmt: EmbeddedFormat,
        data: bytes | None,
        visible: VisibleSchemas | None = None,
    ) -> Any:
        """A stored key or value as the JSON value a REST consumer of `fmt` receives.
        `visible`: the ids `org` was already found to see in this request (kept up to date)."""
        if data is None:
            return None
        if fmt == EmbeddedFormat.BINARY:
            return base64.standard_b64encode(data).decode("ascii")
        if fmt == EmbeddedFormat.JSON:
            try:
                return json.loads(data)
            except ValueError as error:
                raise UndecodableRecord(f"The record is not JSON text: {error}") from None
        if fmt == EmbeddedFormat.STRING:
            try:
                return data.decode()
            except UnicodeDecodeError as error:
                raise UndecodableRecord(f"The record is not UTF-8 text: {error}") from None
        try:
            schema_id, body = unframe(data)
        except WireFormatError as error:
            raise UndecodableRecord(f"The record is not in {fmt.value} format: {error}") from None
        if visible is not None and visible.org != org:
            raise ValueError(f"the ids seen by org {visible.org} were offered for org {org}")
        codec = await self._codec(OrgRegistry(self._registry, org), fmt, schema_id, visible)
        try:
            return codec.decode(body)
        except UndecodableDatum as error:
            raise UndecodableRecord(f"The record of schema {schema_id}: {error}") from None

    async def schema_format(
        self,
        org: str,
        topic: str,
        part: Part,
        *,
        schema_id: int | None = None,
        schema_version: int | None = None,
        subject: str | None = None,
    ) -> EmbeddedFormat:
        """The schema format of the schema these options choose (as `encode` would), for a
        caller that names a schema but no format (REST v3 does)."""
        registry = OrgRegistry(self._registry, org)
        chosen = await self._schema_id(
            registry, None, subject or f"{topic}-{part}", None, schema_id, schema_version
        )
        with _registry_refusals():
            parsed = await registry.parsed_schema(chosen)
        for fmt, schema_type in _SCHEMA_TYPES.items():
            if schema_type == parsed.schema_type:
                return fmt
        raise SchemaInvalid(f"Schema {chosen} is a {parsed.schema_type} schema, of no format")

    # --- which schema ---------------------------------------------------------------------

    async def _schema_id(
        self,
        registry: OrgRegistry,
        fmt: EmbeddedFormat | None,
        subject: str,
        schema: str | None,
        schema_id: int | None,
        schema_version: int | None,
    ) -> int:
        options = {"schema": schema, "schema_id": schema_id, "schema_version": schema_version}
        given = [name for name, value in options.items() if value is not None]
        if len(given) > 1:
            raise EmbeddedRequestInvalid(
                "Give at most one of schema, schema_id and schema_version, not "
                + " and ".join(given)
            )
        with _registry_refusals():
            if schema_id is not None:
                return schema_id  # visibility and type are checked with the codec
            if schema is not None:
                assert fmt is not None, "an inline schema comes with its format"
                return await _registered(registry, subject, fmt, schema)
            version = await registry.version(subject, schema_version or LATEST, deleted=False)
            return version.schema_id

    async def _codec(
        self,
        registry: OrgRegistry,
        fmt: EmbeddedFormat,
        schema_id: int,
        visible: VisibleSchemas | None = None,
    ) -> DatumCodec:
        codec = self._codecs.get(schema_id)
        if codec is None or visible is None or schema_id not in visible:
            with _registry_refusals():
                parsed = await registry.parsed_schema(schema_id)  # also: may the org see it
            if visible is not None:
                visible.add(schema_id)
            if codec is None:
                codec = DatumCodec(parsed)
                self._codecs[schema_id] = codec
                if len(self._codecs) > CODECS_MAX:
                    self._codecs.popitem(last=False)
        self._codecs.move_to_end(schema_id)
        if codec.schema_type != fmt.schema_type:
            raise SchemaInvalid(
                f"Schema {schema_id} is a {codec.schema_type} schema; the {fmt.value} format "
                f"needs a schema of type {fmt.schema_type}"
            )
        return codec

    def _bounded(self, part: Part, encoded: bytes) -> bytes:
        if len(encoded) > self._encoded_part_bytes_max:
            raise RecordPartTooLarge(
                f"The {part} is {len(encoded)} bytes encoded, more than the "
                f"{self._encoded_part_bytes_max} a record part may hold"
            )
        return encoded


async def _registered(registry: OrgRegistry, subject: str, fmt: EmbeddedFormat, text: str) -> int:
    """The id of `text` under `subject`, registered there first if it is not yet."""
    assert fmt.schema_type is not None
    request = SchemaRequest(text, fmt.schema_type)
    try:
        return (await registry.lookup(subject, request)).schema_id
    except RegistryError as error:
        if error.error_code not in (SUBJECT_NOT_FOUND, SCHEMA_NOT_FOUND):
            raise
    return (await registry.register(subject, request)).schema_id


@contextlib.contextmanager
def _registry_refusals() -> Iterator[None]:
    """Registry refusals inside the block raised as this service's errors."""
    try:
        yield
    except RegistryError as error:
        if error.error_code in (SCHEMA_NOT_FOUND, SUBJECT_NOT_FOUND, VERSION_NOT_FOUND):
            raise SchemaNotFound(error.message, error.error_code) from None
        if error.error_code == INVALID_SCHEMA:
            raise SchemaInvalid(error.message) from None
        raise SchemaRegistryRefused(error.message, error.error_code) from None


def _base64_bytes(part: Part, data: Any) -> bytes:
    if not isinstance(data, str):
        raise RecordMismatch(f"A binary {part} is base64 text, not {type(data).__name__}")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as error:  # binascii.Error, or text that is not ASCII at all
        raise RecordMismatch(f"The binary {part} is not base64: {error}") from None


def _text_bytes(part: Part, data: Any) -> bytes:
    if not isinstance(data, str):
        raise RecordMismatch(f"A string {part} is JSON text, not {type(data).__name__}")
    try:
        return data.encode()
    except UnicodeEncodeError as error:  # a lone surrogate escaped in the JSON text
        raise RecordMismatch(f"The string {part} is not Unicode text: {error}") from None


def _json_bytes(data: Any) -> bytes:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError as error:  # a lone surrogate escaped in the JSON text
        raise RecordMismatch(f"The JSON holds text that is not Unicode: {error}") from None
