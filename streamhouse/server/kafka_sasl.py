"""The SASL door of one Kafka connection: SaslHandshake and SaslAuthenticate, and who it is.

The listener asks `verdict(api_key)` about every request (kafka/sasl_gate.py's table) and
hands the SASL ones to `answer`, which runs the sans-IO exchange (kafka/sasl.py) and fetches
what it asks for from the `Authenticator`. A failed exchange, an unsupported mechanism or a
request out of turn is answered, then the connection is closed (`SaslAnswer.close`).

Only SaslHandshake v1 is served: v0 would switch the connection to unframed SASL tokens,
which no client of ours sends (librdkafka, aiokafka and kafka-python all take v1 once
SaslAuthenticate is advertised). Re-authentication (KIP-368): a SaslHandshake on an
authenticated connection starts a new exchange with the same mechanism, which must prove the
same principal; until it ends the connection keeps its principal.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sasl import (
    Authenticated,
    Challenge,
    Event,
    Failed,
    NeedCredential,
    NeedPasswordCheck,
    SaslExchange,
)
from streamhouse.kafka.sasl_gate import AuthState, Verdict, verdict
from streamhouse.ports.clock import Clock
from streamhouse.server.kafka_context import Values

SERVER_NONCE_BYTES = 18  # 24 URL-safe characters, as Kafka's ScramSaslServer draws
NO_SESSION_LIFETIME_MS = 0  # SaslAuthenticate's session_lifetime_ms: no re-authentication due
log = logging.getLogger("streamhouse.kafka.sasl")


def server_nonce() -> str:
    """SCRAM's server nonce: random, printable, without ','."""
    return secrets.token_urlsafe(SERVER_NONCE_BYTES)


@dataclass(frozen=True)
class SaslAnswer:
    """The response values of a SASL request, and whether the connection closes after it."""

    values: Values
    close: bool = False


@dataclass(frozen=True)
class SaslOptions:
    """What every connection's SASL door shares."""

    mechanisms: tuple[str, ...]
    authenticator: Authenticator
    clock: Clock
    session_lifetime_ms: int
    fake_salt_key: bytes  # the agent's secret behind unknown users' fake SCRAM salts
    nonce: Callable[[], str] = server_nonce


class SaslDoor:
    """The authentication state of one connection."""

    def __init__(self, options: SaslOptions) -> None:
        self._options = options
        self.state = AuthState.HANDSHAKE
        self.principal: Principal | None = None
        self._mechanism = ""
        self._exchange: SaslExchange | None = None
        self._candidate: Principal | None = None  # whom the credential looked up belongs to
        self._expires_ms: int | None = None

    def verdict(self, api_key: int) -> Verdict:
        expired = (
            self._expires_ms is not None and self._options.clock.monotonic_ms() >= self._expires_ms
        )
        return verdict(self.state, api_key, expired)

    async def answer(self, request: Request) -> SaslAnswer:
        """The answer to a request `verdict` gave to the SASL door."""
        if request.api_key == ApiKey.SASL_HANDSHAKE:
            return self._handshake(str(getattr(request.body, "mechanism", "")))
        assert request.api_key == ApiKey.SASL_AUTHENTICATE, request
        return await self._authenticate(bytes(getattr(request.body, "auth_bytes", b"")))

    # ------------------------------------------------------------ SaslHandshake

    def _handshake(self, mechanism: str) -> SaslAnswer:
        enabled = list(self._options.mechanisms)
        if mechanism not in enabled:
            log.info("SASL handshake refused: mechanism %r is not enabled", mechanism)
            code = ErrorCode.UNSUPPORTED_SASL_MECHANISM
            return SaslAnswer({"error_code": code, "mechanisms": enabled}, close=True)
        reauthenticating = self.state is AuthState.AUTHENTICATED
        if reauthenticating and mechanism != self._mechanism:
            log.info("SASL re-authentication refused: %s, not %s", mechanism, self._mechanism)
            code = ErrorCode.ILLEGAL_SASL_STATE
            return SaslAnswer({"error_code": code, "mechanisms": enabled}, close=True)
        self._mechanism = mechanism
        options = self._options
        self._exchange = SaslExchange(mechanism, options.nonce(), options.fake_salt_key)
        self.state = AuthState.REAUTHENTICATING if reauthenticating else AuthState.AUTHENTICATING
        return SaslAnswer({"error_code": ErrorCode.NONE, "mechanisms": enabled})

    # ------------------------------------------------------------ SaslAuthenticate

    async def _authenticate(self, token: bytes) -> SaslAnswer:
        exchange = self._exchange
        assert exchange is not None, "SaslAuthenticate reached the door before a handshake"
        try:
            event = await self._resolve(exchange, exchange.receive_token(token))
        except StreamHouseError as error:  # the credential store failed: no verdict possible
            log.warning("SASL authentication could not check credentials: %s", error)
            return _failure("Authentication failed: credentials cannot be checked now")
        if isinstance(event, Challenge):
            return SaslAnswer(_authenticate_values(event.token, NO_SESSION_LIFETIME_MS))
        if isinstance(event, Authenticated):
            return self._authenticated(event)
        assert isinstance(event, Failed), event
        log.info("SASL %s authentication failed: %s", self._mechanism, event.message)
        return _failure(event.message)

    async def _resolve(self, exchange: SaslExchange, event: Event) -> Event:
        """Answer what the exchange asks for until it has something for the client."""
        authenticator = self._options.authenticator
        while True:
            if isinstance(event, NeedPasswordCheck):
                self._candidate = await authenticator.plain(event.user, event.password)
                event = exchange.password_checked(self._candidate is not None)
            elif isinstance(event, NeedCredential):
                found = await authenticator.scram_credential(event.user, self._mechanism)
                if found is None:
                    self._candidate = None
                    event = exchange.credential_missing()
                else:
                    self._candidate, credential = found
                    event = exchange.credential_found(
                        credential.salt,
                        credential.iterations,
                        credential.stored_key,
                        credential.server_key,
                    )
            else:
                return event

    def _authenticated(self, event: Authenticated) -> SaslAnswer:
        principal = self._candidate
        assert principal is not None and principal.user == event.user, (principal, event.user)
        if self.principal is not None and principal != self.principal:
            log.info(
                "SASL re-authentication as %s refused: the connection is %s",
                principal.kafka_name,
                self.principal.kafka_name,
            )
            return _failure("Re-authentication must prove the same principal")
        reauthenticated = self.principal is not None
        self.principal = principal
        self.state = AuthState.AUTHENTICATED
        self._exchange = None
        lifetime_ms = self._options.session_lifetime_ms
        now_ms = self._options.clock.monotonic_ms()
        self._expires_ms = now_ms + lifetime_ms if lifetime_ms else None
        log.info(
            "Kafka connection %s as %s of org %s (%s)",
            "re-authenticated" if reauthenticated else "authenticated",
            principal.kafka_name,
            principal.org,
            self._mechanism,
        )
        return SaslAnswer(_authenticate_values(event.token, lifetime_ms))


def _authenticate_values(token: bytes, session_lifetime_ms: int) -> Values:
    values: dict[str, Any] = {"error_code": ErrorCode.NONE, "auth_bytes": token}
    values["session_lifetime"] = session_lifetime_ms
    return values


def _failure(message: str) -> SaslAnswer:
    values = {
        "error_code": ErrorCode.SASL_AUTHENTICATION_FAILED,
        "error_message": message,
        "auth_bytes": b"",
    }
    return SaslAnswer(values, close=True)
