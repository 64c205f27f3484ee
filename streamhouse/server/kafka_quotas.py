"""Kafka handlers of DescribeClientQuotas and AlterClientQuotas over the quota service, for the
org of the acting principal (the default org on an unauthenticated listener).

They translate Kafka's entities, filters and ops to the service's and back; the rules (who may
alter which quota, which keys and values are legal, how a filter matches) are the service's
and the tenancy floor's. An entity with no components is the org's own.
"""

from __future__ import annotations

from typing import Any

from streamhouse.engine.quotas import (
    AlterOutcome,
    QuotaAlteration,
    QuotaEntry,
    QuotaService,
    client_of,
)
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.server.kafka_context import PRINCIPAL, Completion, Handler, KafkaContext, done
from streamhouse.tenancy.quota_filters import FilterComponent, entity_of
from streamhouse.tenancy.quotas import InvalidQuota, QuotaEntity


def _quotas(ctx: KafkaContext) -> QuotaService:
    if ctx.quotas is None:
        raise StreamHouseError("this agent keeps no quotas")
    return ctx.quotas


def _entity_data(entity: QuotaEntity) -> list[dict[str, Any]]:
    return [{"entity_type": kind, "entity_name": name} for kind, name in entity]


async def describe_client_quotas(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    components = [
        FilterComponent(c.entity_type, int(c.match_type), c.match) for c in body.components
    ]
    principal = PRINCIPAL.get()
    try:
        found = await _quotas(ctx).describe(
            client_of(principal)[0], principal, components, bool(body.strict)
        )
    except StreamHouseError as error:  # QuotaRefused, NotPermitted
        return done(_described(error.code, str(error), None))
    return done(_described(ErrorCode.NONE, None, found))


def _described(
    code: ErrorCode, message: str | None, found: list[QuotaEntry] | None
) -> dict[str, Any]:
    entries = None
    if found is not None:
        entries = [
            {
                "entity": _entity_data(entry.entity),
                "values": [{"key": k, "value": v} for k, v in sorted(entry.values.items())],
            }
            for entry in found
        ]
    return {"throttle_time": 0, "error_code": code, "error_message": message, "entries": entries}


async def alter_client_quotas(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    quotas = _quotas(ctx)
    principal = PRINCIPAL.get()
    parsed = [_alteration(entry) for entry in body.entries]
    valid = [item for item in parsed if isinstance(item, QuotaAlteration)]
    outcomes = iter(
        await quotas.alter(client_of(principal)[0], valid, principal, bool(body.validate_only))
    )
    results = []
    for entry, item in zip(body.entries, parsed, strict=True):
        outcome = next(outcomes) if isinstance(item, QuotaAlteration) else item
        results.append(
            {
                "error_code": outcome.error,
                "error_message": outcome.message,
                "entity": [
                    {"entity_type": e.entity_type, "entity_name": e.entity_name}
                    for e in entry.entity
                ],
            }
        )
    return done({"throttle_time": 0, "entries": results})


def _alteration(entry: Any) -> QuotaAlteration | AlterOutcome:
    """The entry as the service takes it, or its refusal (an unknown entity type, a key
    named twice)."""
    try:
        entity = entity_of([(e.entity_type, e.entity_name) for e in entry.entity])
    except InvalidQuota as invalid:
        return AlterOutcome((), ErrorCode.INVALID_REQUEST, str(invalid))
    changes: dict[str, float | None] = {}
    for op in entry.ops:
        if op.key in changes:
            return AlterOutcome(entity, ErrorCode.INVALID_REQUEST, f"Duplicate quota key {op.key}")
        changes[op.key] = None if op.remove else float(op.value)
    return QuotaAlteration(entity, changes)


QUOTA_HANDLERS: dict[ApiKey, Handler] = {
    ApiKey.DESCRIBE_CLIENT_QUOTAS: describe_client_quotas,
    ApiKey.ALTER_CLIENT_QUOTAS: alter_client_quotas,
}
