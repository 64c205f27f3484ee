"""A response body already in wire form: parts joined once into the response frame."""

from __future__ import annotations

from dataclasses import dataclass

from streamhouse.kafka.varint import Buffer


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A response body as wire-format parts (record batches among them, not copied)."""

    parts: list[Buffer]
    flexible: bool  # whether the response header carries a tagged-fields section

    @property
    def size_bytes(self) -> int:
        return sum(len(part) for part in self.parts)
