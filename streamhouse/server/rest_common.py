"""What every route of the REST proxy door shares: the refusal type and its Confluent shape, who
is calling (org, ACL grant) and the bounded reading of a request body.

A refusal is `{"error_code": <code>, "message": ...}` with the HTTP status it names: v2 uses
Confluent's five-digit codes (40401 unknown topic, 40402 unknown partition, 422xx for bodies the
embedded format cannot take), v3 the HTTP status itself. Each request acts in its caller's org
(http_auth; with authentication off, the default org with every permission); names travel
through `tenancy.names.scoped`/`unscoped`, so another org's topic is as unknown as a missing
one, and each operation is checked against the caller's ACL grant (engine/acls.py `Grant`),
the same rule the Kafka door applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from streamhouse.engine.acls import EVERYTHING, AclService, Grant
from streamhouse.engine.admin import AdminService
from streamhouse.engine.consume import FetchService
from streamhouse.engine.consumer_instances import ConsumerInstances
from streamhouse.engine.embedded_formats import EmbeddedFormats
from streamhouse.engine.group_calls import CoordinatedElsewhere
from streamhouse.engine.produce import ProduceService
from streamhouse.errors import (
    ErrorCode,
    InvalidConfig,
    InvalidPartitions,
    InvalidTopic,
    StorageError,
    StreamHouseError,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.server.http_auth import HttpAuth
from streamhouse.tenancy.acls import AclOperation, ResourceType
from streamhouse.tenancy.names import DEFAULT_ORG, scoped, unscoped

REQUEST_BYTES_MAX = 8 * 1024 * 1024  # a bigger body is refused with 413 before it is parsed
V2_CONTENT_TYPE = "application/vnd.kafka.v2+json"
V3_CONTENT_TYPE = "application/json"

# Confluent's codes of the REST proxy (HTTP status * 100 + a sub-code)
TOPIC_NOT_FOUND = 40401
PARTITION_NOT_FOUND = 40402
CONSUMER_INSTANCE_NOT_FOUND = 40403
UNAUTHENTICATED = 40101
NOT_AUTHORIZED = 40301
KAFKA_ERROR = 50002
KAFKA_RETRIABLE_ERROR = 50003
# A group's coordinator moving or out of reach for a moment: retriable (503)
COORDINATOR_MOVING = frozenset(
    {
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.NETWORK_EXCEPTION,
    }
)
BAD_REQUEST = 400
UNPROCESSABLE = 422
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415


class RestError(Exception):
    """A request refused with `status` and Confluent's `error_code`."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "message": self.message}


def topic_not_found(name: str) -> RestError:
    return RestError(404, TOPIC_NOT_FOUND, f"Topic {name} not found.")


def partition_not_found(name: str, partition: int) -> RestError:
    return RestError(404, PARTITION_NOT_FOUND, f"Partition {partition} of topic {name} not found.")


def engine_refusal(error: StreamHouseError, topic: str | None = None) -> RestError:
    """The REST answer of an engine refusal (`topic`: as the caller named it, so the message
    never shows the org-scoped name)."""
    if isinstance(error, UnknownTopicOrPartition):
        return topic_not_found(topic or "?")
    if isinstance(error, TopicAlreadyExists):
        return RestError(400, 40002, f"Topic {topic} already exists.")
    if isinstance(error, (InvalidTopic, InvalidPartitions, InvalidConfig)):
        return RestError(400, BAD_REQUEST, str(error))
    if error.code in (ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_REQUIRED_ACKS):
        return RestError(400, BAD_REQUEST, str(error))
    if error.code in (ErrorCode.TOPIC_AUTHORIZATION_FAILED, ErrorCode.GROUP_AUTHORIZATION_FAILED):
        return RestError(403, NOT_AUTHORIZED, str(error))
    if error.code is ErrorCode.GROUP_ID_NOT_FOUND:
        return RestError(404, 404, str(error))
    if isinstance(error, StorageError):
        return RestError(503, KAFKA_RETRIABLE_ERROR, f"the store failed, retry: {error}")
    if error.code in COORDINATOR_MOVING and not isinstance(error, CoordinatedElsewhere):
        return RestError(503, KAFKA_RETRIABLE_ERROR, f"{error.code.name}, retry: {error}")
    return RestError(500, KAFKA_ERROR, f"{error.code.name}: {error}")


@dataclass(frozen=True)
class Caller:
    """Who sends a request: the org it acts in and what its ACLs grant."""

    org: str
    grant: Grant

    def internal(self, topic: str) -> str:
        """The engine's name of the caller's topic; one that would read as another org's is
        as unknown as a missing one."""
        try:
            return scoped(self.org, topic)
        except ValueError:
            raise topic_not_found(topic) from None

    def internal_group(self, group: str) -> str:
        try:
            return scoped(self.org, group)
        except ValueError:
            raise RestError(404, 404, f"Consumer group {group} not found.") from None

    def shown(self, internal: str) -> str | None:
        """The caller's name of an engine name; None when it is another org's."""
        return unscoped(self.org, internal)

    def may(self, operation: AclOperation, kind: ResourceType, name: str) -> bool:
        return self.grant.allows(operation, kind, name)

    def require(self, operation: AclOperation, kind: ResourceType, name: str) -> None:
        """403 / 40301 unless the grant allows `operation` on `name` (the caller's name)."""
        if not self.may(operation, kind, name):
            raise RestError(
                403, NOT_AUTHORIZED, f"not authorized to {operation.name} {kind.name} {name}"
            )


OPEN_CALLER = Caller(DEFAULT_ORG, EVERYTHING)


@dataclass(frozen=True)
class RestServices:
    """The engine services the door translates to, and who may call it."""

    admin: AdminService
    produce: ProduceService
    fetch: FetchService
    acls: AclService
    auth: HttpAuth
    formats: EmbeddedFormats  # keys and values in the embedded formats, through the registry
    # v2 consumer instances (rest_v2_consumers); `consumers.groups`: any group's coordinator
    consumers: ConsumerInstances

    async def authenticate(self, request: Request) -> None:
        """Every route's first step (the app's dependency): who calls, kept for `caller_in`."""
        request.state.caller = await caller_of(request, self.auth, self.acls)


def caller_in(request: Request) -> Caller:
    """The request's caller, as `RestServices.authenticate` found it."""
    found = request.state.caller
    assert isinstance(found, Caller)
    return found


async def caller_of(request: Request, auth: HttpAuth, acls: AclService) -> Caller:
    """The request's caller (raises Unauthenticated when credentials are required and bad)."""
    principal = await auth.principal(request)
    if principal is None:
        return OPEN_CALLER
    host = request.client.host if request.client is not None else ""
    return Caller(principal.org, await acls.grant(principal, host))


def content_type(request: Request) -> str:
    """The media type of the body, lower case, without parameters ("" when none was sent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def body_bytes(request: Request, bytes_max: int = REQUEST_BYTES_MAX) -> bytes:
    """The body, refused with 413 past `bytes_max`: a declared length is checked before
    anything is read, and the stream is cut as soon as it passes the bound."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bytes_max:
        raise _too_large(bytes_max)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > bytes_max:
            raise _too_large(bytes_max)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(bytes_max: int) -> RestError:
    return RestError(
        PAYLOAD_TOO_LARGE,
        PAYLOAD_TOO_LARGE,
        f"the request body is larger than {bytes_max} bytes",
    )


def parse_json(raw: bytes) -> Any:
    """A JSON document, or 400 with the parser's complaint."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise RestError(400, BAD_REQUEST, f"the body is not JSON: {error}") from None


def json_object(raw: bytes, status: int = UNPROCESSABLE) -> dict[str, Any]:
    """A JSON object body; anything else is refused with `status`."""
    document = parse_json(raw)
    if not isinstance(document, dict):
        raise RestError(status, status, "the body must be a JSON object")
    return document


def field(
    document: dict[str, Any], name: str, kind: type | tuple[type, ...], status: int = UNPROCESSABLE
) -> Any:
    """`document[name]` when it is a `kind` (None when absent or null), else refused."""
    value = document.get(name)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RestError(status, status, f"the field '{name}' must be {names}")
    return value
