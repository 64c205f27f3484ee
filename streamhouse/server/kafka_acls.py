"""Kafka handlers of CreateAcls, DescribeAcls and DeleteAcls over the ACL service.

They translate Kafka's entries to bindings and filters and back; the rules (who manages which
org's ACLs, what a valid binding or filter is) are the ACL service's.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from streamhouse.engine.acls import AclService
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.ports.tenancy import AclBinding
from streamhouse.server.kafka_context import PRINCIPAL, Completion, Handler, KafkaContext, done
from streamhouse.tenancy.acls import AclFilter, InvalidAcl


def _acls(ctx: KafkaContext) -> AclService:
    if ctx.acls is None:
        raise StreamHouseError("this agent keeps no ACLs")
    return ctx.acls


def _filter(entry: Any) -> AclFilter:
    return AclFilter(
        resource_type=int(entry.resource_type_filter),
        resource_name=entry.resource_name_filter,
        pattern_type=int(entry.pattern_type_filter),
        principal=entry.principal_filter,
        host=entry.host_filter,
        operation=int(entry.operation),
        permission=int(entry.permission_type),
    )


def _entry(binding: AclBinding) -> dict[str, Any]:
    return {
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation,
        "permission_type": binding.permission,
    }


async def create_acls(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    bindings = [
        AclBinding(
            resource_type=int(creation.resource_type),
            resource_name=creation.resource_name,
            pattern_type=int(creation.resource_pattern_type),
            principal=creation.principal,
            host=creation.host,
            operation=int(creation.operation),
            permission=int(creation.permission_type),
        )
        for creation in body.creations
    ]
    try:
        outcomes = await _acls(ctx).create(bindings, PRINCIPAL.get())
    except StreamHouseError as error:
        outcomes = [(error.code, str(error))] * len(bindings)
    results = [{"error_code": code, "error_message": message} for code, message in outcomes]
    return done({"throttle_time": 0, "results": results})


async def describe_acls(ctx: KafkaContext, request: Request) -> Completion:
    try:
        found = await _acls(ctx).describe(_filter(request.body), PRINCIPAL.get())
    except StreamHouseError as error:  # NotPermitted among them
        return done(_described(error.code, str(error), []))
    except InvalidAcl as invalid:
        return done(_described(ErrorCode.INVALID_REQUEST, str(invalid), []))
    return done(_described(ErrorCode.NONE, None, found))


def _described(code: ErrorCode, message: str | None, found: list[AclBinding]) -> dict[str, Any]:
    def resource(binding: AclBinding) -> tuple[int, str, int]:
        return (binding.resource_type, binding.resource_name, binding.pattern_type)

    resources = [
        {
            "resource_type": resource_type,
            "resource_name": name,
            "pattern_type": pattern_type,
            "acls": [_entry(binding) for binding in bindings],
        }
        for (resource_type, name, pattern_type), bindings in groupby(
            sorted(found, key=resource), key=resource
        )
    ]
    return {
        "throttle_time": 0,
        "error_code": code,
        "error_message": message,
        "resources": resources,
    }


async def delete_acls(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    filters = [_filter(entry) for entry in body.filters]
    try:
        answers = await _acls(ctx).delete(filters, PRINCIPAL.get())
    except StreamHouseError as error:
        results = [
            {"error_code": error.code, "error_message": str(error), "matching_acls": []}
            for _ in filters
        ]
        return done({"throttle_time": 0, "filter_results": results})
    results = [
        {
            "error_code": answer.error,
            "error_message": answer.message,
            "matching_acls": [
                {
                    "error_code": ErrorCode.NONE,
                    "error_message": None,
                    "resource_type": binding.resource_type,
                    "resource_name": binding.resource_name,
                    "pattern_type": binding.pattern_type,
                    **_entry(binding),
                }
                for binding in answer.bindings
            ],
        }
        for answer in answers
    ]
    return done({"throttle_time": 0, "filter_results": results})


ACL_HANDLERS: dict[ApiKey, Handler] = {
    ApiKey.CREATE_ACLS: create_acls,
    ApiKey.DESCRIBE_ACLS: describe_acls,
    ApiKey.DELETE_ACLS: delete_acls,
}
