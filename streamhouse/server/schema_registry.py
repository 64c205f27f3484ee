"""The schema registry door: Confluent Schema Registry's REST API over the registry service.

Paths, query parameters, bodies and error codes are Confluent's, so its clients (confluent-kafka's
SchemaRegistryClient and serializers, the Java client, curl scripts) work unchanged. This module
only translates: every rule is in `engine.schema_registry`. A refusal answers
`{"error_code": <Confluent code>, "message": ...}` with the code's first three digits as the HTTP
status; a malformed body is a 400 or 422 with a message, never a 500.

Each request acts in its caller's org (http_auth: with authentication required, an API key as
HTTP Basic credentials, which Confluent's clients send from `basic.auth.user.info`; without
it, 401 / 40101), through `engine.org_registry`, which keeps orgs' subjects and ids apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamhouse.engine.org_registry import OrgRegistry
from streamhouse.engine.schema_registry import (
    INVALID_SCHEMA,
    STORE_ERROR,
    RegistryError,
    SchemaRegistry,
    SchemaRequest,
    SubjectSchema,
    canonical_json,
)
from streamhouse.errors import StreamHouseError
from streamhouse.ports.schemas import GLOBAL, SchemaContent, SchemaReference, StoredSchema
from streamhouse.schemas import SchemaType
from streamhouse.server.http_api import HttpListener
from streamhouse.server.http_auth import CHALLENGE_HEADERS, HttpAuth, Unauthenticated

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
REQUEST_BYTES_MAX = 8 * 1024 * 1024
MALFORMED_BODY = 400
UNPROCESSABLE_BODY = 422
UNAUTHENTICATED = 40101  # Confluent's code for a request without usable credentials


class _Body(Exception):
    """A request body that cannot be read as the call needs it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _answer(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=CONTENT_TYPE)


def _refusal(error_code: int, status: int, message: str) -> JSONResponse:
    return _answer({"error_code": error_code, "message": message}, status)


async def _document(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > REQUEST_BYTES_MAX:
        raise _Body(
            MALFORMED_BODY, f"request body of {len(raw)} bytes, more than {REQUEST_BYTES_MAX}"
        )
    try:
        document = json.loads(raw or b"{}")
    except ValueError as error:
        raise _Body(MALFORMED_BODY, f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise _Body(UNPROCESSABLE_BODY, "the body must be a JSON object")
    return document


def _field(document: dict[str, Any], name: str, kind: type, required: bool = False) -> Any:
    value = document.get(name)
    if value is None:
        if required:
            raise _Body(UNPROCESSABLE_BODY, f"the body needs the field '{name}'")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Body(UNPROCESSABLE_BODY, f"the field '{name}' must be a {kind.__name__}")
    return value


def _references(document: dict[str, Any]) -> tuple[SchemaReference, ...]:
    found = []
    for item in _field(document, "references", list) or []:
        if not isinstance(item, dict):
            raise _Body(UNPROCESSABLE_BODY, "each reference must be an object")
        found.append(
            SchemaReference(
                name=_field(item, "name", str, required=True),
                subject=_field(item, "subject", str, required=True),
                version=_field(item, "version", int, required=True),
            )
        )
    return tuple(found)


async def _schema_request(request: Request) -> SchemaRequest:
    document = await _document(request)
    type_name = _field(document, "schemaType", str) or SchemaType.AVRO.value
    try:
        schema_type = SchemaType(type_name.upper())
    except ValueError:
        raise RegistryError(
            INVALID_SCHEMA, f"Invalid schema type {type_name}; valid types are AVRO, JSON, PROTOBUF"
        ) from None
    return SchemaRequest(
        schema=_field(document, "schema", str, required=True),
        schema_type=schema_type,
        references=_references(document),
        metadata=canonical_json(_field(document, "metadata", dict)),
        rule_set=canonical_json(_field(document, "ruleSet", dict)),
        schema_id=_field(document, "id", int),
        version=_field(document, "version", int),
    )


def _content_fields(content: SchemaContent, schema_text: str) -> dict[str, Any]:
    """A schema's fields as Confluent writes them: type left out for AVRO, empty lists left out."""
    body: dict[str, Any] = {}
    if content.schema_type != SchemaType.AVRO.value:
        body["schemaType"] = content.schema_type
    if content.references:
        body["references"] = [
            {"name": ref.name, "subject": ref.subject, "version": ref.version}
            for ref in content.references
        ]
    if content.metadata is not None:
        body["metadata"] = json.loads(content.metadata)
    if content.rule_set is not None:
        body["ruleSet"] = json.loads(content.rule_set)
    body["schema"] = schema_text
    return body


async def _authenticate(request: Request) -> None:
    """Every route's first step: the caller's org, kept for `_org_registry`."""
    auth: HttpAuth = request.app.state.auth
    request.state.org = await auth.org(request)


def _org_registry(request: Request) -> OrgRegistry:
    return OrgRegistry(request.app.state.registry, request.state.org)


Registry = Annotated[OrgRegistry, Depends(_org_registry)]
"""The registry as the caller's org sees it (a route parameter)."""


async def _subject_schema_body(
    registry: OrgRegistry, found: SubjectSchema, fmt: str | None
) -> dict[str, Any]:
    text = await registry.render(StoredSchema(found.schema_id, found.content), fmt)
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema_id,
        **_content_fields(found.content, text),
    }


def build_registry_app(registry: SchemaRegistry, auth: HttpAuth | None = None) -> FastAPI:
    """The registry's app; `auth`: who calls it (None: authentication is off)."""
    app = FastAPI(
        title="StreamHouse schema registry",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(_authenticate)],
    )
    app.state.registry = registry
    app.state.auth = auth or HttpAuth(None)
    _install_error_answers(app)
    _schema_routes(app)
    _subject_routes(app)
    _compatibility_routes(app)
    _config_routes(app)
    _mode_routes(app)
    return app


def _install_error_answers(app: FastAPI) -> None:
    @app.exception_handler(RegistryError)
    async def refused(_: Request, error: RegistryError) -> JSONResponse:
        return _refusal(error.error_code, error.status, error.message)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, error: Unauthenticated) -> JSONResponse:
        body = {"error_code": UNAUTHENTICATED, "message": str(error)}
        return JSONResponse(body, 401, headers=CHALLENGE_HEADERS, media_type=CONTENT_TYPE)

    @app.exception_handler(_Body)
    async def unreadable(_: Request, error: _Body) -> JSONResponse:
        return _refusal(error.status, error.status, str(error))

    @app.exception_handler(StreamHouseError)
    async def store_failed(_: Request, error: StreamHouseError) -> JSONResponse:
        return _refusal(STORE_ERROR, 500, f"Error in the backend data store: {error}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return _refusal(
            error.status_code, error.status_code, f"HTTP {error.status_code} {error.detail}"
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(str(item.get("msg", item)) for item in error.errors())
        return _refusal(UNPROCESSABLE_BODY, UNPROCESSABLE_BODY, problems)


def _schema_routes(app: FastAPI) -> None:
    @app.get("/")
    async def root() -> JSONResponse:
        return _answer({})

    @app.get("/schemas/types")
    async def schema_types() -> JSONResponse:
        return _answer(
            [kind.value for kind in (SchemaType.JSON, SchemaType.PROTOBUF, SchemaType.AVRO)]
        )

    @app.get("/contexts")
    async def contexts() -> JSONResponse:
        return _answer(["."])

    @app.get("/schemas/ids/{schema_id}")
    async def schema_by_id(
        registry: Registry, schema_id: int, format: str | None = None
    ) -> JSONResponse:
        stored = await registry.schema_by_id(schema_id)
        return _answer(_content_fields(stored.content, await registry.render(stored, format)))

    @app.get("/schemas/ids/{schema_id}/schema")
    async def raw_schema_by_id(
        registry: Registry, schema_id: int, format: str | None = None
    ) -> Response:
        stored = await registry.schema_by_id(schema_id)
        return Response(await registry.render(stored, format), media_type=CONTENT_TYPE)

    @app.get("/schemas/ids/{schema_id}/subjects")
    async def subjects_of_schema(
        registry: Registry, schema_id: int, deleted: bool = False
    ) -> JSONResponse:
        versions = await registry.schema_versions(schema_id, deleted=deleted)
        return _answer(sorted({version.subject for version in versions}))

    @app.get("/schemas/ids/{schema_id}/versions")
    async def versions_of_schema(
        registry: Registry, schema_id: int, deleted: bool = False
    ) -> JSONResponse:
        versions = await registry.schema_versions(schema_id, deleted=deleted)
        return _answer([{"subject": v.subject, "version": v.version} for v in versions])

    @app.get("/schemas")
    async def schemas(
        registry: Registry,
        subjectPrefix: str = "",
        deleted: bool = False,
        latestOnly: bool = False,
        offset: int = 0,
        limit: int = -1,
    ) -> JSONResponse:
        found = await registry.schemas(
            prefix=subjectPrefix, deleted=deleted, latest_only=latestOnly
        )
        page = found[offset:] if limit < 0 else found[offset : offset + limit]
        return _answer([await _subject_schema_body(registry, item, None) for item in page])


def _subject_routes(app: FastAPI) -> None:
    @app.get("/subjects")
    async def subjects(
        registry: Registry,
        subjectPrefix: str = "",
        deleted: bool = False,
        deletedOnly: bool = False,
    ) -> JSONResponse:
        found = await registry.subjects(
            prefix=subjectPrefix, deleted=deleted, deleted_only=deletedOnly
        )
        return _answer(found)

    @app.get("/subjects/{subject:path}/versions")
    async def versions(
        registry: Registry,
        subject: str,
        deleted: bool = False,
        deletedOnly: bool = False,
    ) -> JSONResponse:
        return _answer(await registry.versions(subject, deleted=deleted, deleted_only=deletedOnly))

    @app.post("/subjects/{subject:path}/versions")
    async def register(
        registry: Registry, subject: str, request: Request, normalize: bool = False
    ) -> JSONResponse:
        asked = await _schema_request(request)
        added = await registry.register(subject, asked, normalize=normalize)
        return _answer({"id": added.schema_id})

    @app.post("/subjects/{subject:path}")
    async def lookup(
        registry: Registry,
        subject: str,
        request: Request,
        normalize: bool = False,
        deleted: bool = False,
    ) -> JSONResponse:
        asked = await _schema_request(request)
        found = await registry.lookup(subject, asked, normalize=normalize, deleted=deleted)
        return _answer(await _subject_schema_body(registry, found, None))

    @app.get("/subjects/{subject:path}/versions/{version}")
    async def version(
        registry: Registry,
        subject: str,
        version: str,
        deleted: bool = False,
        format: str | None = None,
    ) -> JSONResponse:
        found = await registry.version(subject, version, deleted=deleted)
        return _answer(await _subject_schema_body(registry, found, format))

    @app.get("/subjects/{subject:path}/versions/{version}/schema")
    async def raw_version(
        registry: Registry,
        subject: str,
        version: str,
        deleted: bool = False,
        format: str | None = None,
    ) -> Response:
        found = await registry.version(subject, version, deleted=deleted)
        text = await registry.render(await registry.schema_by_id(found.schema_id), format)
        return Response(text, media_type=CONTENT_TYPE)

    @app.get("/subjects/{subject:path}/versions/{version}/referencedby")
    async def referenced_by(registry: Registry, subject: str, version: str) -> JSONResponse:
        return _answer(await registry.referenced_by(subject, version))

    @app.delete("/subjects/{subject:path}/versions/{version}")
    async def delete_version(
        registry: Registry, subject: str, version: str, permanent: bool = False
    ) -> JSONResponse:
        return _answer(await registry.delete_version(subject, version, permanent=permanent))

    @app.delete("/subjects/{subject:path}")
    async def delete_subject(
        registry: Registry, subject: str, permanent: bool = False
    ) -> JSONResponse:
        return _answer(await registry.delete_subject(subject, permanent=permanent))


def _compatibility_routes(app: FastAPI) -> None:
    async def check(
        registry: Registry,
        subject: str,
        version: str | None,
        request: Request,
        verbose: bool,
        normalize: bool,
    ) -> JSONResponse:
        asked = await _schema_request(request)
        verdict = await registry.check(subject, version, asked, normalize=normalize)
        body: dict[str, Any] = {"is_compatible": verdict.is_compatible}
        if verbose:
            body["messages"] = list(verdict.messages)
        return _answer(body)

    @app.post("/compatibility/subjects/{subject:path}/versions/{version}")
    async def check_version(
        registry: Registry,
        subject: str,
        version: str,
        request: Request,
        verbose: bool = False,
        normalize: bool = False,
    ) -> JSONResponse:
        return await check(registry, subject, version, request, verbose, normalize)

    @app.post("/compatibility/subjects/{subject:path}/versions")
    async def check_subject(
        registry: Registry,
        subject: str,
        request: Request,
        verbose: bool = False,
        normalize: bool = False,
    ) -> JSONResponse:
        return await check(registry, subject, None, request, verbose, normalize)


_CONFIG_FIELDS = {
    "compatibility": str,
    "compatibilityLevel": str,  # some clients PUT the name GET answers
    "normalize": bool,
    "alias": str,
    "validateFields": bool,
    "compatibilityGroup": str,
    "defaultMetadata": dict,
    "overrideMetadata": dict,
    "defaultRuleSet": dict,
    "overrideRuleSet": dict,
}


async def _config_update(request: Request) -> dict[str, Any]:
    document = await _document(request)
    update = {name: _field(document, name, kind) for name, kind in _CONFIG_FIELDS.items()}
    level = update.pop("compatibilityLevel")
    if update["compatibility"] is None:
        update["compatibility"] = level
    return update


def _config_routes(app: FastAPI) -> None:
    @app.get("/config")
    async def global_config(
        registry: Registry,
    ) -> JSONResponse:
        return _answer(await registry.config(GLOBAL))

    @app.put("/config")
    async def set_global_config(registry: Registry, request: Request) -> JSONResponse:
        return _answer(await registry.set_config(GLOBAL, await _config_update(request)))

    @app.delete("/config")
    async def delete_global_config(
        registry: Registry,
    ) -> JSONResponse:
        return _answer(await registry.delete_config(GLOBAL))

    @app.get("/config/{subject:path}")
    async def subject_config(
        registry: Registry, subject: str, defaultToGlobal: bool = False
    ) -> JSONResponse:
        return _answer(await registry.config(subject, default_to_global=defaultToGlobal))

    @app.put("/config/{subject:path}")
    async def set_subject_config(
        registry: Registry, subject: str, request: Request
    ) -> JSONResponse:
        return _answer(await registry.set_config(subject, await _config_update(request)))

    @app.delete("/config/{subject:path}")
    async def delete_subject_config(registry: Registry, subject: str) -> JSONResponse:
        return _answer(await registry.delete_config(subject))


async def _mode_body(request: Request) -> str:
    document = await _document(request)
    mode: str = _field(document, "mode", str, required=True)
    return mode


def _mode_routes(app: FastAPI) -> None:
    @app.get("/mode")
    async def global_mode(
        registry: Registry,
    ) -> JSONResponse:
        return _answer({"mode": await registry.mode(GLOBAL)})

    @app.put("/mode")
    async def set_global_mode(
        registry: Registry, request: Request, force: bool = False
    ) -> JSONResponse:
        mode = await registry.set_mode(GLOBAL, await _mode_body(request), force=force)
        return _answer({"mode": mode})

    @app.delete("/mode")
    async def delete_global_mode(
        registry: Registry,
    ) -> JSONResponse:
        return _answer({"mode": await registry.delete_mode(GLOBAL)})

    @app.get("/mode/{subject:path}")
    async def subject_mode(
        registry: Registry, subject: str, defaultToGlobal: bool = False
    ) -> JSONResponse:
        return _answer({"mode": await registry.mode(subject, default_to_global=defaultToGlobal)})

    @app.put("/mode/{subject:path}")
    async def set_subject_mode(
        registry: Registry, subject: str, request: Request, force: bool = False
    ) -> JSONResponse:
        mode = await registry.set_mode(subject, await _mode_body(request), force=force)
        return _answer({"mode": mode})

    @app.delete("/mode/{subject:path}")
    async def delete_subject_mode(registry: Registry, subject: str) -> JSONResponse:
        return _answer({"mode": await registry.delete_mode(subject)})


@dataclass
class RegistryDoor:
    """The running registry door of an agent."""

    listener: HttpListener
    port: int

    async def close(self) -> None:
        await self.listener.close()


async def start_registry_door(
    host: str, port: int, registry: SchemaRegistry, auth: HttpAuth | None = None
) -> RegistryDoor:
    """Serve the registry on `host:port` (0: any free port)."""
    listener = HttpListener(build_registry_app(registry, auth))
    bound = await listener.start(host, port)
    return RegistryDoor(listener, bound)
