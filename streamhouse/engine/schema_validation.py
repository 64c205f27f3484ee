"""Broker-side schema validation: the records of a validated topic carry a registered schema id.

A topic with `confluent.value.schema.validation=true` (or the key form) accepts a record only if
its value (key) is null or starts with Confluent's wire framing, magic byte 0 and a 4-byte
big-endian schema id, and that id is a live version of the topic's subject, `<topic>-value`
(`<topic>-key`; TopicNameStrategy). `topic` is the internal name, so the subject is the topic's
org's (`acme:orders` → `acme:orders-value`, org acme's `orders-value`); refusals name it as
the org knows it. Ids found valid are remembered for a short while, so a busy
topic asks the store once per id, not once per record; a refusal is always decided afresh.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamhouse.engine.schema_registry import SchemaRegistry, local_subject
from streamhouse.kafka.records import Record
from streamhouse.ports.clock import Clock
from streamhouse.schemas.wire_format import schema_id_of

VALID_IDS_MAX = 4_096  # (subject, id) pairs remembered as valid
VALID_ID_MAX_AGE_MS = 10_000  # a deleted version stops validating within this


class RecordSchemas:
    """Which records of a batch break their topic's schema validation, and why."""

    def __init__(self, registry: SchemaRegistry, clock: Clock) -> None:
        self._registry = registry
        self._clock = clock
        self._valid: dict[tuple[str, int], int] = {}  # (subject, id) -> when found valid

    async def refusals(
        self, topic: str, records: Sequence[Record], *, keys: bool, values: bool
    ) -> list[tuple[int, str]]:
        """(index in the batch, message) for each record refused."""
        refused: list[tuple[int, str]] = []
        for index, record in enumerate(records):
            problems = []
            if keys:
                problems += await self._problems(topic, "key", record.key)
            if values:
                problems += await self._problems(topic, "value", record.value)
            if problems:
                refused.append((index, f"record {index}: " + "; ".join(problems)))
        self._registry.stats.validation_refusals += len(refused)
        return refused

    async def _problems(self, topic: str, part: str, data: bytes | None) -> list[str]:
        if data is None:
            return []
        subject = f"{topic}-{part}"
        shown = local_subject(subject)
        schema_id = schema_id_of(data)
        if schema_id is None:
            return [
                f"its {part} carries no schema id (it must start with magic byte 0 and the "
                f"4-byte id of a schema registered under subject '{shown}')"
            ]
        if not await self._is_valid(subject, schema_id):
            return [
                f"its {part} carries schema id {schema_id}, which is not registered under "
                f"subject '{shown}'"
            ]
        return []

    async def _is_valid(self, subject: str, schema_id: int) -> bool:
        now_ms = self._clock.monotonic_ms()
        found_ms = self._valid.get((subject, schema_id))
        if found_ms is not None and now_ms - found_ms < VALID_ID_MAX_AGE_MS:
            return True
        if not await self._registry.subject_has_schema(subject, schema_id):
            return False
        if len(self._valid) >= VALID_IDS_MAX:
            self._valid.clear()
        self._valid[(subject, schema_id)] = now_ms
        return True
