"""A response body already in wire form: parts joined once into the response frame, and the
length prefixes hand-written encoders share."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamhouse.kafka.varint import Buffer, encode_unsigned

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A response body as wire-format parts (record batches among them, not copied)."""

    parts: list[Buffer]
    flexible: bool  # whether the response header carries a tagged-fields section

    @property
    def size_bytes(self) -> int:
        return sum(len(part) for part in self.parts)


def array_count(count: int, flexible: bool) -> bytes:
    """An array's element count: compact (N + 1) in flexible versions, else int32."""
    return encode_unsigned(count + 1) if flexible else _INT32.pack(count)


def wire_string(text: str, flexible: bool) -> bytes:
    """A string with its length: compact (N + 1) in flexible versions, else int16."""
    data = text.encode()
    return (encode_unsigned(len(data) + 1) if flexible else _INT16.pack(len(data))) + data
