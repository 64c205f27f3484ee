"""The schema registry's pure rules: parsing, canonical forms and compatibility for Avro,
JSON Schema and Protobuf. No IO, no clocks: text in, verdicts out."""

from streamhouse.schemas.levels import incompatibilities
from streamhouse.schemas.model import (
    CompatibilityLevel,
    Dependency,
    InvalidSchema,
    ParsedSchema,
    Problem,
    SchemaType,
)
from streamhouse.schemas.parsing import parse_schema

__all__ = [
    "CompatibilityLevel",
    "Dependency",
    "InvalidSchema",
    "ParsedSchema",
    "Problem",
    "SchemaType",
    "incompatibilities",
    "parse_schema",
]
