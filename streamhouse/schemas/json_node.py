"""A JSON Schema subschema together with what its `$ref`s resolve through and the draft it is
read in: the unit both validation and the compatibility check walk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import referencing
import referencing.jsonschema
from jsonschema import validators

DRAFT4 = "http://json-schema.org/draft-04/schema#"
DRAFT2019 = "https://json-schema.org/draft/2019-09/schema"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, eq=False)
class SchemaRoot:
    """A whole schema: its JSON, the registry its dependencies are in, its draft's validator."""

    raw: Any
    registry: referencing.Registry[Any]
    validator_class: Any  # the jsonschema Validator class of the schema's draft

    def node(self) -> SchemaNode:
        resource = specification(self.raw).create_resource(self.raw)
        return SchemaNode(self.raw, self.registry.resolver_with_root(resource), self)


@dataclass(frozen=True)
class SchemaNode:
    """A subschema with the resolver its `$ref`s resolve through."""

    schema: Any
    resolver: Any  # referencing's Resolver (not exported under a public name)
    root: SchemaRoot

    def keyword(self, name: str, default: Any = None) -> Any:
        if isinstance(self.schema, dict):
            return self.schema.get(name, default)
        return default

    def child(self, schema: Any) -> SchemaNode:
        resolver = self.resolver
        if isinstance(schema, dict) and self._identifies(schema):
            resource = specification(self.root.raw).create_resource(schema)
            resolver = resolver.in_subresource(resource)
        return SchemaNode(schema, resolver, self.root)

    def _identifies(self, schema: dict[str, Any]) -> bool:
        """Whether a subschema starts a resource of its own (draft 4 spells `$id` as `id`)."""
        key = "id" if self.draft() == DRAFT4 else "$id"
        return isinstance(schema.get(key), str)

    def with_schema(self, schema: Any) -> SchemaNode:
        return SchemaNode(schema, self.resolver, self.root)

    def draft(self) -> str:
        return str(self.root.validator_class.META_SCHEMA.get("$schema", ""))

    def ref_has_siblings(self) -> bool:
        """From 2019-09 on, keywords beside `$ref` apply too; before, they are ignored."""
        return self.draft() in (DRAFT2019, DRAFT2020)

    def is_valid(self, instance: Any) -> bool:
        validator = self.root.validator_class(self.schema, registry=self.root.registry)
        return bool(validator.evolve(_resolver=self.resolver).is_valid(instance))


def validator_class_for(contents: Any) -> Any:
    return validators.validator_for(contents, default=validators.Draft7Validator)


def specification(contents: Any) -> Any:
    dialect = contents.get("$schema", "") if isinstance(contents, dict) else ""
    return referencing.jsonschema.specification_with(dialect, default=referencing.jsonschema.DRAFT7)
