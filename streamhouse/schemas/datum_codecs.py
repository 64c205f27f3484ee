"""One schema's datums in and out, whatever its type: JSON values (as Confluent's REST Proxy
embeds them) to the bytes after Confluent's wire framing, and back.

Protobuf alone puts message indexes between the schema id and the datum; the codec writes and
reads them so that callers handle every type alike.
"""

from __future__ import annotations

from typing import Any

from streamhouse.schemas.avro_datums import AvroDatums
from streamhouse.schemas.avro_schema import AvroSchema
from streamhouse.schemas.json_datums import JsonDatums
from streamhouse.schemas.json_schema import JsonSchema
from streamhouse.schemas.model import ParsedSchema, UndecodableDatum
from streamhouse.schemas.protobuf_datums import ProtobufDatums
from streamhouse.schemas.protobuf_schema import ProtobufSchema
from streamhouse.schemas.wire_format import (
    WireFormatError,
    decode_message_indexes,
    encode_message_indexes,
)


class DatumCodec:
    """Datums of one parsed schema (DatumMismatch for a value that does not fit it,
    UndecodableDatum for bytes that are not one of its datums)."""

    def __init__(self, schema: ParsedSchema) -> None:
        self.schema_type = schema.schema_type
        self._avro = AvroDatums(schema) if isinstance(schema, AvroSchema) else None
        self._json = JsonDatums(schema) if isinstance(schema, JsonSchema) else None
        self._protobuf = ProtobufDatums(schema) if isinstance(schema, ProtobufSchema) else None

    def encode(self, value: Any, message_name: str | None = None) -> bytes:
        """What follows the schema id in the frame; `message_name` picks a Protobuf message."""
        if self._avro is not None:
            return self._avro.encode(value)
        if self._json is not None:
            return self._json.encode(value)
        assert self._protobuf is not None, self.schema_type
        datum, indexes = self._protobuf.encode(value, message_name)
        return encode_message_indexes(indexes) + datum

    def decode(self, body: bytes) -> Any:
        """The JSON value of what follows the schema id in a frame."""
        if self._avro is not None:
            return self._avro.decode(body)
        if self._json is not None:
            return self._json.decode(body)
        assert self._protobuf is not None, self.schema_type
        try:
            indexes, datum = decode_message_indexes(body)
        except WireFormatError as error:
            raise UndecodableDatum(f"the Protobuf message indexes are malformed: {error}") from None
        return self._protobuf.decode(indexes, datum)
