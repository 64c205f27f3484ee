"""From a schema's type and text (and its registered dependencies) to a ParsedSchema."""

from __future__ import annotations

from collections.abc import Sequence

from streamhouse.schemas.avro_schema import parse_avro
from streamhouse.schemas.json_schema import parse_json_schema
from streamhouse.schemas.model import Dependency, InvalidSchema, ParsedSchema, SchemaType
from streamhouse.schemas.protobuf_schema import parse_protobuf


def parse_schema(
    schema_type: SchemaType,
    text: str,
    dependencies: Sequence[Dependency] = (),
    *,
    normalize: bool = False,
) -> ParsedSchema:
    """Parse and validate `text` as a schema of `schema_type`.

    `dependencies` is the transitive closure of what it refers to, each dependency before the
    ones that refer to it. `normalize` (Confluent's `?normalize=true`) asks for the stronger
    canonical form each format documents. Raises InvalidSchema."""
    for dependency in dependencies:
        if dependency.schema_type != schema_type:
            raise InvalidSchema(
                f"a {schema_type} schema cannot refer to the {dependency.schema_type}"
                f" schema {dependency.name!r}"
            )
    if schema_type == SchemaType.AVRO:
        return parse_avro(text, dependencies, normalize)
    if schema_type == SchemaType.JSON:
        return parse_json_schema(text, dependencies, normalize)
    if schema_type == SchemaType.PROTOBUF:
        return parse_protobuf(text, dependencies, normalize)
    raise InvalidSchema(f"unknown schema type {schema_type!r}")
