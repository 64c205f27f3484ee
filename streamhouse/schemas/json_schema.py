"""JSON Schema: parsing (the schema is checked against its draft's metaschema; `$ref`s to
registered dependencies resolve by URL) and the canonical text.

Drafts 4, 6, 7, 2019-09 and 2020-12 as jsonschema knows them; draft 7 when `$schema` is absent.
Canonical text: the schema JSON, compact, keys in the given order; `normalize` sorts keys.

Compatibility: see json_compatibility.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import referencing
import referencing.exceptions
from jsonschema.exceptions import SchemaError

from streamhouse.schemas.json_compatibility import reader_problems
from streamhouse.schemas.json_node import SchemaNode, SchemaRoot, specification, validator_class_for
from streamhouse.schemas.model import Dependency, InvalidSchema, ParsedSchema, Problem, SchemaType


@dataclass(frozen=True, eq=False)
class JsonSchema(ParsedSchema):
    root: SchemaRoot
    normalized: bool = False
    schema_type: SchemaType = field(default=SchemaType.JSON, init=False)

    def canonical_text(self) -> str:
        return json.dumps(
            self.root.raw, separators=(",", ":"), ensure_ascii=False, sort_keys=self.normalized
        )

    def reader_problems(self, writer: ParsedSchema) -> list[Problem]:
        assert isinstance(writer, JsonSchema)
        return reader_problems(self.root.node(), writer.root.node())


def parse_json_schema(text: str, dependencies: Sequence[Dependency], normalize: bool) -> JsonSchema:
    registry: referencing.Registry[Any] = referencing.Registry()
    for dependency in dependencies:
        contents = _load_checked(dependency.text, f"dependency {dependency.name!r}")
        resource = specification(contents).create_resource(contents)
        registry = registry.with_resource(dependency.name, resource)
    registry = registry.crawl()  # a dependency's own `$id`s and anchors resolve too
    raw = _load_checked(text, "schema")
    schema = JsonSchema(SchemaRoot(raw, registry, validator_class_for(raw)), normalize)
    _check_references(schema.root.node())
    return schema


def _load_checked(text: str, what: str) -> Any:
    try:
        contents = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidSchema(f"the JSON {what} is not JSON: {error}") from error
    if not isinstance(contents, (dict, bool)):
        raise InvalidSchema(f"the JSON {what} is neither an object nor a boolean")
    try:
        validator_class_for(contents).check_schema(contents)
    except SchemaError as error:
        raise InvalidSchema(f"invalid JSON {what}: {error.message}") from error
    return contents


def _check_references(node: SchemaNode) -> None:
    """Every `$ref` of the schema (outside its dependencies) resolves."""
    for ref_node, ref in _references(node):
        try:
            ref_node.resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as error:
            raise InvalidSchema(f"invalid JSON schema: $ref {ref!r} does not resolve") from error


def _references(node: SchemaNode) -> Iterator[tuple[SchemaNode, str]]:
    schema = node.schema
    if isinstance(schema, list):
        for item in schema:
            yield from _references(node.child(item))
    if not isinstance(schema, dict):
        return
    if isinstance(schema.get("$ref"), str):
        yield node, schema["$ref"]
    for key, value in schema.items():
        if key not in ("enum", "const", "default", "examples") and isinstance(value, (dict, list)):
            yield from _references(node.child(value))
