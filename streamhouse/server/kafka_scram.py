"""Kafka handlers of DescribeUserScramCredentials and AlterUserScramCredentials.

They translate Kafka's mechanism codes and entries to the tenancy service, which decides (who
may see or change which user's credentials, Kafka's iteration bounds, duplicates); the acting
principal is the connection's (none on an open listener).
"""

from __future__ import annotations

from typing import Any

from streamhouse.engine.tenancy import ScramUpsertion, TenancyService, UserScram
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.server.kafka_context import PRINCIPAL, Completion, Handler, KafkaContext, done

# Kafka's ScramMechanism codes (UNKNOWN is 0)
MECHANISM_CODES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
CODES_BY_MECHANISM = {name: code for code, name in MECHANISM_CODES.items()}
NO_TENANCY = "this agent keeps no SCRAM credentials"


def _tenancy(ctx: KafkaContext) -> TenancyService:
    if ctx.tenancy is None:
        raise StreamHouseError(NO_TENANCY)
    return ctx.tenancy


async def describe_user_scram_credentials(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    users = [user.name for user in body.users or ()]
    try:
        described = await _tenancy(ctx).describe_scram(users, PRINCIPAL.get())
    except StreamHouseError as error:
        return done(
            {
                "throttle_time": 0,
                "error_code": error.code,
                "error_message": str(error),
                "results": [],
            }
        )
    return done(
        {
            "throttle_time": 0,
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "results": [_described(user) for user in described],
        }
    )


def _described(user: UserScram) -> dict[str, Any]:
    return {
        "user": user.user,
        "error_code": user.error,
        "error_message": user.message,
        "credential_infos": [
            {"mechanism": CODES_BY_MECHANISM[mechanism], "iterations": iterations}
            for mechanism, iterations in user.credentials
        ],
    }


async def alter_user_scram_credentials(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    unsupported: dict[str, tuple[ErrorCode, str | None]] = {}
    deletions = []
    for deletion in body.deletions:
        if int(deletion.mechanism) not in MECHANISM_CODES:
            unsupported[deletion.name] = _unsupported(int(deletion.mechanism))
        else:
            deletions.append((deletion.name, MECHANISM_CODES[int(deletion.mechanism)]))
    upsertions = []
    for upsertion in body.upsertions:
        mechanism = MECHANISM_CODES.get(int(upsertion.mechanism))
        if mechanism is None:
            unsupported[upsertion.name] = _unsupported(int(upsertion.mechanism))
            continue
        upsertions.append(
            ScramUpsertion(
                upsertion.name,
                mechanism,
                int(upsertion.iterations),
                bytes(upsertion.salt),
                bytes(upsertion.salted_password),
            )
        )
    try:
        outcomes = await _tenancy(ctx).alter_scram(deletions, upsertions, PRINCIPAL.get())
    except StreamHouseError as error:
        users = {d.name for d in body.deletions} | {u.name for u in body.upsertions}
        outcomes = {user: (error.code, str(error)) for user in users}
    outcomes = {**outcomes, **unsupported}
    return done(
        {
            "throttle_time": 0,
            "results": [
                {"user": user, "error_code": code, "error_message": message}
                for user, (code, message) in sorted(outcomes.items())
            ],
        }
    )


def _unsupported(code: int) -> tuple[ErrorCode, str]:
    return ErrorCode.UNSUPPORTED_SASL_MECHANISM, f"Unknown SCRAM mechanism code {code}"


SCRAM_HANDLERS: dict[ApiKey, Handler] = {
    ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: describe_user_scram_credentials,
    ApiKey.ALTER_USER_SCRAM_CREDENTIALS: alter_user_scram_credentials,
}
