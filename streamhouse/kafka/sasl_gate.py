"""Which requests a connection of a SASL listener may send in each state of its authentication.

Kafka's rules (SaslServerAuthenticator): before the handshake only ApiVersions and
SaslHandshake are read, anything else closes the connection unanswered; after the
handshake only SaslAuthenticate, anything else is answered ILLEGAL_SASL_STATE and the
connection closed. Once authenticated every API is served, and a new SaslHandshake starts a
re-authentication (KIP-368); past the session's lifetime only that is accepted.
"""

from __future__ import annotations

import enum
from typing import Final

from streamhouse.kafka.apis import ApiKey


class AuthState(enum.Enum):
    HANDSHAKE = "waiting for SaslHandshake"
    AUTHENTICATING = "authenticating (SaslAuthenticate expected)"
    AUTHENTICATED = "authenticated"
    REAUTHENTICATING = "re-authenticating (SaslAuthenticate expected)"


class Verdict(enum.Enum):
    SERVE = "dispatch to the API's handler"
    SASL = "the SASL door answers it"
    REFUSE = "answer ILLEGAL_SASL_STATE, then close"
    CLOSE = "close without an answer"


_SASL_APIS = (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)
_TABLE: Final[dict[tuple[AuthState, int], Verdict]] = {
    (AuthState.HANDSHAKE, ApiKey.API_VERSIONS): Verdict.SERVE,
    (AuthState.HANDSHAKE, ApiKey.SASL_HANDSHAKE): Verdict.SASL,
    (AuthState.AUTHENTICATING, ApiKey.SASL_AUTHENTICATE): Verdict.SASL,
    (AuthState.AUTHENTICATED, ApiKey.SASL_HANDSHAKE): Verdict.SASL,
    (AuthState.AUTHENTICATED, ApiKey.SASL_AUTHENTICATE): Verdict.REFUSE,
    (AuthState.REAUTHENTICATING, ApiKey.SASL_AUTHENTICATE): Verdict.SASL,
}
_OTHERWISE: Final = {
    AuthState.HANDSHAKE: Verdict.CLOSE,
    AuthState.AUTHENTICATING: Verdict.REFUSE,
    AuthState.AUTHENTICATED: Verdict.SERVE,
    AuthState.REAUTHENTICATING: Verdict.REFUSE,
}


def verdict(state: AuthState, api_key: int, session_expired: bool = False) -> Verdict:
    """What to do with a request of `api_key` in `state`."""
    if state is AuthState.AUTHENTICATED and session_expired and api_key not in _SASL_APIS:
        return Verdict.CLOSE  # Kafka closes a connection whose session expired
    return _TABLE.get((state, api_key), _OTHERWISE[state])
