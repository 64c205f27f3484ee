"""The schema registry's pure rules: parsing, canonical forms and compatibility for Avro,
JSON Schema and Protobuf. No IO, no clocks: text in, verdicts out."""

from streamhouse.schemas.levels import incompatibilities
from streamhouse.schemas.model import (
    CompatibilityLevel,
    DatumMismatch,
    Dependency,
    InvalidSchema,
    ParsedSchema,
    Problem,
    SchemaType,
    UndecodableDatum,
)
from streamhouse.schemas.parsing import parse_schema

__all__ = [
    "CompatibilityLevel",
    "DatumMismatch",
    "Dependency",
    "InvalidSchema",
    "ParsedSchema",
    "Problem",
    "SchemaType",
    "UndecodableDatum",
    "incompatibilities",
    "parse_schema",
]
