"""JSON values checked against a JSON Schema and written as JSON text, the datum of Confluent's
JSON Schema serializer."""

from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import best_match

from streamhouse.schemas.json_schema import JsonSchema
from streamhouse.schemas.model import DatumMismatch, UndecodableDatum


class JsonDatums:
    """Values of one JSON Schema."""

    def __init__(self, schema: JsonSchema) -> None:
        root = schema.root
        self._validator = root.validator_class(root.raw, registry=root.registry)

    def encode(self, value: Any) -> bytes:
        error = best_match(self._validator.iter_errors(value))
        if error is not None:
            raise DatumMismatch(f"field '{error.json_path}': {error.message}")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as error:  # not UTF-8, or not JSON
            raise UndecodableDatum(f"the bytes are not JSON text: {error}") from None
