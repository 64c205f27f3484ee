"""The HTTP door's org and key routes under /api/v1 (what `streamctl orgs` and `keys` call).

With authentication required, each call carries an API key as HTTP Basic credentials (key id
as the user name, secret as the password): a missing or wrong one is a 401, a key that may
not manage what it asks for a 403 (the rules are the tenancy service's). With authentication
off (the embedded default) the routes are open, as the rest of the HTTP door is.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from streamhouse.engine.authentication import Authenticator
from streamhouse.engine.tenancy import NotPermitted, TenancyRefused, TenancyService
from streamhouse.ports.tenancy import ApiKey
from streamhouse.server.http_auth import HttpAuth


def install_tenancy_routes(
    app: FastAPI, tenancy: TenancyService, authenticator: Authenticator | None
) -> None:
    """Add the routes; `authenticator` None means authentication is off (the app answers
    http_auth's Unauthenticated: build_app installs that answer)."""
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
