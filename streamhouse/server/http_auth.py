"""Who is calling an HTTP door: the one way every HTTP surface (the agent's /api/v1, the schema
registry) learns the principal of a request.

With authentication off (the embedded default) no one is asked: there is no principal and the
request acts in the default org. With authentication required, the request carries an API key
as HTTP Basic credentials (key id as the user name, secret as the password), checked by the
Authenticator's PLAIN rule; missing, malformed or wrong credentials raise Unauthenticated,
which each door answers as a 401 in its own error shape with CHALLENGE_HEADERS.
"""

from __future__ import annotations

import base64

from fastapi import Request

from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.tenancy.names import DEFAULT_ORG

BASIC_SCHEME = "basic "
CHALLENGE_HEADERS = {"WWW-Authenticate": 'Basic realm="streamhouse"'}


class Unauthenticated(Exception):
    """No usable credentials came with a request that needs them."""


class HttpAuth:
    """The principal of each request; `authenticator` None means authentication is off."""

    def __init__(self, authenticator: Authenticator | None) -> None:
        self._authenticator = authenticator

    async def principal(self, request: Request) -> Principal | None:
        """The caller's principal; None when authentication is off."""
        if self._authenticator is None:
            return None
        user, secret = basic_credentials(request.headers.get("authorization", ""))
        principal = await self._authenticator.plain(user, secret)
        if principal is None:
            raise Unauthenticated("the key or its secret is wrong, or the key was revoked")
        return principal

    async def org(self, request: Request) -> str:
        """The org the request acts in: its principal's, or the default org when auth is off."""
        principal = await self.principal(request)
        return DEFAULT_ORG if principal is None else principal.org


def basic_credentials(header: str) -> tuple[str, str]:
    """(key id, secret) from an `Authorization: Basic base64(key:secret)` header."""
    if not header.lower().startswith(BASIC_SCHEME):
        raise Unauthenticated("this agent requires an API key: HTTP Basic, key id and secret")
    try:
        decoded = base64.b64decode(header[len(BASIC_SCHEME) :], validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        raise Unauthenticated("the Basic credentials are not base64 of key:secret") from None
    user, separator, secret = decoded.partition(":")
    if not separator:
        raise Unauthenticated("the Basic credentials are not key:secret")
    return user, secret
