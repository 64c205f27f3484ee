"""The registry's vocabulary for schemas: their types, compatibility levels, dependencies, the
parsed-schema interface every format implements, the one error a bad schema raises and the two
a datum raises (one that does not fit its schema, bytes that cannot be read with theirs)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum


class SchemaType(StrEnum):
    AVRO = "AVRO"
    JSON = "JSON"
    PROTOBUF = "PROTOBUF"


class CompatibilityLevel(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


class InvalidSchema(ValueError):
    """The text is not a valid schema of its type; str(e) says why, for a user."""


class DatumMismatch(ValueError):
    """A value does not fit its schema; str(e) names the field and says why, for a user."""


class UndecodableDatum(ValueError):
    """Bytes cannot be read as a datum of their schema; str(e) says why."""


@dataclass(frozen=True)
class Dependency:
    """One referenced schema, already registered.

    `name` is spelled as the referring schema spells it: an Avro full type name, a JSON Schema
    `$ref` URL, a Protobuf import path. `text` is its stored canonical text."""

    name: str
    schema_type: SchemaType
    text: str


@dataclass(frozen=True)
class Problem:
    """One reason a reader cannot read what a writer wrote: Confluent's errorType name, where
    (a JSON-pointer-like path into the schemas) and what, in words."""

    kind: str
    path: str
    detail: str


class ParsedSchema(ABC):
    """A schema that parsed and validated, with its dependencies resolved."""

    schema_type: SchemaType

    @abstractmethod
    def canonical_text(self) -> str:
        """The text the registry stores and serves: formatting-insensitive, so one schema
        written twice gets one text."""

    def render(self, fmt: str | None) -> str:
        """The text served for `?format=fmt`; formats this type does not know serve the
        canonical text."""
        del fmt
        return self.canonical_text()

    @abstractmethod
    def reader_problems(self, writer: ParsedSchema) -> list[Problem]:
        """Why this schema, as the reader, cannot read data written with `writer` (of the
        same type); empty when it can."""
