"""The HTTP door's org, key and quota routes under /api/v1 (what `streamctl orgs`, `keys` and
`quotas` call).

With authentication required, each call carries an API key as HTTP Basic credentials (key id
as the user name, secret as the password): a missing or wrong one is a 401, a key that may
not manage what it asks for a 403 (the rules are the tenancy service's). With authentication
off (the embedded default) the routes are open, as the rest of the HTTP door is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.engine.quotas import QuotaAlteration, QuotaService
from streamhouse.engine.tenancy import NotPermitted, TenancyRefused, TenancyService
from streamhouse.errors import ErrorCode
from streamhouse.ports.tenancy import ApiKey
from streamhouse.server.http_auth import HttpAuth
from streamhouse.tenancy.quota_filters import entity_of
from streamhouse.tenancy.quotas import InvalidQuota


def install_tenancy_routes(
    app: FastAPI,
    tenancy: TenancyService,
    authenticator: Authenticator | None,
    quotas: QuotaService | None = None,
) -> None:
    """Add the routes; `authenticator` None means authentication is off (the app answers
    http_auth's Unauthenticated: build_app installs that answer); `quotas` None: no quota
    routes."""
    actor = HttpAuth(authenticator).principal

    @app.exception_handler(NotPermitted)
    async def not_permitted(_: Request, error: NotPermitted) -> JSONResponse:
        return JSONResponse({"error": "FORBIDDEN", "message": str(error)}, status_code=403)

    @app.exception_handler(TenancyRefused)
    async def refused(_: Request, error: TenancyRefused) -> JSONResponse:
        return JSONResponse({"error": "INVALID_REQUEST", "message": str(error)}, status_code=400)

    @app.get("/api/v1/orgs")
    async def orgs(request: Request) -> list[dict[str, Any]]:
        return [asdict(org) for org in await tenancy.orgs(await actor(request))]

    @app.post("/api/v1/orgs", status_code=201)
    async def create_org(request: Request) -> dict[str, Any]:
        name = _string(await _body(request), "name")
        return asdict(await tenancy.create_org(name, await actor(request)))

    @app.delete("/api/v1/orgs/{name}")
    async def delete_org(name: str, request: Request) -> dict[str, str]:
        await tenancy.delete_org(name, await actor(request))
        return {"deleted": name}

    @app.get("/api/v1/orgs/{org}/keys")
    async def keys(org: str, request: Request) -> list[dict[str, Any]]:
        return [_shown(key) for key in await tenancy.keys(org, await actor(request))]

    @app.post("/api/v1/orgs/{org}/keys", status_code=201)
    async def issue_key(org: str, request: Request) -> dict[str, str]:
        role = _string(await _body(request), "role", "member")
        issued = await tenancy.issue_key(org, role, await actor(request))
        return {"key": issued.key_id, "secret": issued.secret, "org": org, "role": role}

    @app.delete("/api/v1/keys/{key_id}")
    async def revoke_key(key_id: str, request: Request) -> dict[str, str]:
        await tenancy.revoke_key(key_id, await actor(request))
        return {"revoked": key_id}

    if quotas is not None:
        _install_quota_routes(app, quotas, actor)


def _install_quota_routes(
    app: FastAPI, quotas: QuotaService, actor: Callable[[Request], Awaitable[Principal | None]]
) -> None:
    """GET lists an org's quotas; PUT sets and removes one entity's (`{"entity": {"user":
    "alice"}, "set": {"producer_byte_rate": 1048576}, "remove": ["consumer_byte_rate"]}`; a
    null name is the type's default, `{}` the org itself)."""

    @app.get("/api/v1/orgs/{org}/quotas")
    async def list_quotas(org: str, request: Request) -> list[dict[str, Any]]:
        entries = await quotas.describe(org, await actor(request))
        return [{"entity": dict(e.entity), "values": dict(e.values)} for e in entries]

    @app.put("/api/v1/orgs/{org}/quotas")
    async def alter_quotas(org: str, request: Request) -> dict[str, Any]:
        alteration = _quota_alteration(await _body(request))
        (outcome,) = await quotas.alter(org, [alteration], await actor(request))
        if outcome.error == ErrorCode.CLUSTER_AUTHORIZATION_FAILED:
            raise NotPermitted(outcome.message or "not permitted")
        if outcome.error != ErrorCode.NONE:
            raise TenancyRefused(outcome.message or "refused")
        return {"entity": dict(alteration.entity), "changes": dict(alteration.changes)}


def _quota_alteration(document: dict[str, Any]) -> QuotaAlteration:
    named = document.get("entity", {})
    to_set = document.get("set", {})
    to_remove = document.get("remove", [])
    if not isinstance(named, dict) or not isinstance(to_set, dict):
        raise TenancyRefused('"entity" and "set" must be JSON objects')
    if not isinstance(to_remove, list) or not all(isinstance(k, str) for k in to_remove):
        raise TenancyRefused('"remove" must be a list of quota keys')
    if any(not isinstance(v, int | float) or isinstance(v, bool) for v in to_set.values()):
        raise TenancyRefused('the values of "set" must be numbers')
    try:
        entity = entity_of(list(named.items()))
    except InvalidQuota as invalid:
        raise TenancyRefused(str(invalid)) from None
    changes: dict[str, float | None] = {key: float(value) for key, value in to_set.items()}
    changes.update(dict.fromkeys(to_remove))
    return QuotaAlteration(entity, changes)


async def _body(request: Request) -> dict[str, Any]:
    try:
        document = await request.json()
    except ValueError:
        raise TenancyRefused("the body must be a JSON object") from None
    if not isinstance(document, dict):
        raise TenancyRefused("the body must be a JSON object")
    return document


def _string(document: dict[str, Any], name: str, default: str | None = None) -> str:
    value = document.get(name, default)
    if not isinstance(value, str):
        raise TenancyRefused(f"the body needs a string {name!r}")
    return value


def _shown(key: ApiKey) -> dict[str, Any]:
    """A key as listed: never its hash."""
    return {
        "key": key.key_id,
        "org": key.org,
        "role": key.role,
        "created_ms": key.created_ms,
        "revoked_ms": key.revoked_ms,
    }
