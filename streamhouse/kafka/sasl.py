"""One SASL exchange on the server side as a sans-IO state machine: tokens in, events out.

Mechanisms: PLAIN (RFC 4616) and SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677), the
SCRAM messages parsed and checked by the maintained `scramp` library (strict nonces, proofs).
Secrets are never judged here: the exchange *asks* its caller, who holds the (async) store:

- `receive_token(token)` with each client token; `NeedPasswordCheck` (PLAIN) is answered
  with `password_checked(accepted)`, `NeedCredential` (SCRAM) with `credential_found(...)` or
  `credential_missing()`.
- `Challenge(token)`: send the token and wait for the client's next one.
- `Authenticated(user, token)`: the client is who it says (send `token`, maybe empty).
- `Failed(message)`: the exchange is over and failed; every later input fails too.

Every input returns exactly one event and nothing raises to the caller: a malformed or
oversized token, an input out of turn, a wrong nonce or proof, all end in `Failed`.

No user enumeration: an unknown SCRAM user gets a fake exchange, with a salt and keys
derived from `fake_salt_key` and the user name (the same salt every time for one name, as
a real user's), the same round trips, and fails on its proof with the very message a wrong
password gets. Channel binding is not offered (gs2 header `n,,` only; no -PLUS mechanisms)
and SCRAM extensions (Kafka's `tokenauth`) are refused.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from scramp import ScramException, ScramMechanism
from scramp.utils import ServerError

PLAIN: Final = "PLAIN"
SCRAM_SHA_256: Final = "SCRAM-SHA-256"
SCRAM_SHA_512: Final = "SCRAM-SHA-512"
SCRAM_MECHANISMS: Final = (SCRAM_SHA_256, SCRAM_SHA_512)
MECHANISMS: Final = (PLAIN, *SCRAM_MECHANISMS)
SASL_TOKEN_BYTES_MAX: Final = 64 * 1024
"""The largest client token read; SCRAM's and PLAIN's are a few hundred bytes."""
SCRAM_ITERATIONS_DEFAULT: Final = 4096  # RFC 7677's minimum; the fake exchange's default
FAKE_SALT_BYTES: Final = 16
_GS2_HEADER_NO_BINDING = "n,,"
_SCRAM_FIRST_ATTRIBUTES = ("n", "r")  # anything more is an extension (tokenauth) or an error
_PROBE_NONCE = "probe"  # the user-name probe never answers, so its nonce is never seen
_HASHES: Final = {SCRAM_SHA_256: hashlib.sha256, SCRAM_SHA_512: hashlib.sha512}


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send `token` to the client and feed its answer to `receive_token`."""

    token: bytes


@dataclass(frozen=True, slots=True)
class NeedPasswordCheck:
    """PLAIN: judge the password, then call `password_checked`."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class NeedCredential:
    """SCRAM: look the user's stored credential up, then `credential_found` or `_missing`."""

    user: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The client proved it is `user`; send `token` (SCRAM's server-final; empty for PLAIN)."""

    user: str
    token: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange failed; `message` may be shown to the client (it names no secret)."""

    message: str


Event: TypeAlias = Challenge | NeedPasswordCheck | NeedCredential | Authenticated | Failed


class _State(enum.Enum):
    FIRST_TOKEN = "waiting for the client's first token"
    PASSWORD_CHECK = "waiting for the password check"
    CREDENTIAL = "waiting for the credential lookup"
    FINAL_TOKEN = "waiting for the client's final token"
    SUCCEEDED = "authenticated"
    FAILED = "failed"


class _Input(enum.Enum):
    TOKEN = "a token"
    PASSWORD_CHECKED = "a password check"
    CREDENTIAL = "a credential"


# Which input each state takes; anything else fails the exchange (the method names are
# looked up on the exchange, so the table reads as the protocol does).
_TRANSITIONS: Final[dict[tuple[_State, _Input], str]] = {
    (_State.FIRST_TOKEN, _Input.TOKEN): "_first_token",
    (_State.PASSWORD_CHECK, _Input.PASSWORD_CHECKED): "_password_checked",
    (_State.CREDENTIAL, _Input.CREDENTIAL): "_server_first",
    (_State.FINAL_TOKEN, _Input.TOKEN): "_final_token",
}


def invalid_credentials(mechanism: str) -> str:
    """The one message for a wrong password and an unknown user alike."""
    return f"Authentication failed: invalid username or password (SASL mechanism {mechanism})"


class SaslExchange:
    """The server's side of one SASL authentication with `mechanism` (one of MECHANISMS).

    `server_nonce`: SCRAM's server nonce part, printable ASCII without ','; the caller's
    randomness (this floor has none). `fake_salt_key`: a secret of the agent that the fake
    exchange's salts are derived from, so they cannot be told from real ones.
    `fake_iterations`: set it to what real credentials use, for the same reason.
    """

    def __init__(
        self,
        mechanism: str,
        server_nonce: str,
        fake_salt_key: bytes,
        fake_iterations: int = SCRAM_ITERATIONS_DEFAULT,
        token_bytes_max: int = SASL_TOKEN_BYTES_MAX,
    ) -> None:
        if mechanism not in MECHANISMS:
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}; one of {MECHANISMS}")
        self.mechanism = mechanism
        self._server_nonce = server_nonce
        self._fake_salt_key = fake_salt_key
        self._fake_iterations = fake_iterations
        self._token_bytes_max = token_bytes_max
        self._state = _State.FIRST_TOKEN
        self._user = ""
        self._client_first = ""
        self._scram: object = None  # scramp's ScramServer once the credential is known

    @property
    def succeeded(self) -> bool:
        return self._state is _State.SUCCEEDED

    @property
    def failed(self) -> bool:
        return self._state is _State.FAILED

    # ------------------------------------------------------------ inputs

    def receive_token(self, token: bytes) -> Event:
        """The client's next token."""
        if len(token) > self._token_bytes_max:
            return self._fail(
                f"SASL token of {len(token)} bytes exceeds "
                f"SASL_TOKEN_BYTES_MAX={self._token_bytes_max}"
            )
        return self._step(_Input.TOKEN, token)

    def password_checked(self, accepted: bool) -> Event:
        """PLAIN: the verdict on the password of the last NeedPasswordCheck."""
        return self._step(_Input.PASSWORD_CHECKED, accepted)

    def credential_found(
        self, salt: bytes, iterations: int, stored_key: bytes, server_key: bytes
    ) -> Event:
        """SCRAM: the user's stored credential for this mechanism (RFC 5802's keys)."""
        return self._step(_Input.CREDENTIAL, (salt, stored_key, server_key, iterations))

    def credential_missing(self) -> Event:
        """SCRAM: no such user (or none for this mechanism): a fake exchange goes on."""
        return self._step(_Input.CREDENTIAL, None)

    # ------------------------------------------------------------ the machine

    def _step(self, kind: _Input, value: object) -> Event:
        if self._state is _State.FAILED:
            return Failed("the SASL exchange failed already; reconnect to try again")
        method = _TRANSITIONS.get((self._state, kind))
        if method is None:
            return self._fail(f"unexpected {kind.value} while {self._state.value}")
        handle: Callable[[object], Event] = getattr(self, method)
        return handle(value)

    def _fail(self, message: str) -> Failed:
        self._state = _State.FAILED
        self._scram = None
        return Failed(message)

    def _first_token(self, token: object) -> Event:
        assert isinstance(token, bytes)
        try:
            text = token.decode()
        except UnicodeDecodeError:
            return self._fail(f"malformed {self.mechanism} message: not UTF-8")
        if self.mechanism == PLAIN:
            return self._plain(text)
        return self._client_first_message(text)

    # ------------------------------------------------------------ PLAIN (RFC 4616)

    def _plain(self, text: str) -> Event:
        parts = text.split("\0")
        if len(parts) != 3:
            return self._fail("malformed PLAIN message: expected authzid NUL authcid NUL passwd")
        authzid, user, password = parts
        if not user or not password:
            return self._fail("malformed PLAIN message: empty username or password")
        if authzid not in ("", user):
            return self._fail("PLAIN authorization id must be empty or the username")
        self._user = user
        self._state = _State.PASSWORD_CHECK
        return NeedPasswordCheck(user, password)

    def _password_checked(self, accepted: object) -> Event:
        if not accepted:
            return self._fail(invalid_credentials(self.mechanism))
        self._state = _State.SUCCEEDED
        return Authenticated(self._user, b"")

    # ------------------------------------------------------------ SCRAM (RFC 5802)

    def _client_first_message(self, text: str) -> Event:
        if not text.startswith(_GS2_HEADER_NO_BINDING):
            return self._fail(
                "SCRAM channel binding and authorization ids are not supported: the "
                f"client-first message must start with {_GS2_HEADER_NO_BINDING!r}"
            )
        extra = [
            attribute.split("=", 1)[0]
            for attribute in text[len(_GS2_HEADER_NO_BINDING) :].split(",")[2:]
        ]
        if extra:
            return self._fail(f"SCRAM extensions are not supported: {', '.join(extra)}")
        user = _scram_user(self.mechanism, text)
        if isinstance(user, Failed):
            return self._fail(user.message)
        self._user = user
        self._client_first = text
        self._state = _State.CREDENTIAL
        return NeedCredential(user)

    def _server_first(self, found: object) -> Event:
        credential = found if found is not None else self._fake_credential()
        mechanism = ScramMechanism(self.mechanism)
        try:
            server = mechanism.make_server(lambda _user: credential, s_nonce=self._server_nonce)
            server.set_client_first(self._client_first)
            server_first: str = server.get_server_first()
        except ScramException:
            # the probe accepted the message already, so the stored credential is unusable
            # (too few iterations, too short a salt): no way in, told as any refusal is
            return self._fail(invalid_credentials(self.mechanism))
        self._scram = server
        self._state = _State.FINAL_TOKEN
        return Challenge(server_first.encode())

    def _final_token(self, token: object) -> Event:
        assert isinstance(token, bytes)
        server = self._scram
        try:
            server.set_client_final(token.decode())  # type: ignore[attr-defined]
            server_final: str = server.get_server_final()  # type: ignore[attr-defined]
        except UnicodeDecodeError:
            return self._fail("malformed SCRAM client-final message: not UTF-8")
        except ScramException as error:
            return self._fail(_final_failure(self.mechanism, error))
        self._state = _State.SUCCEEDED
        self._scram = None
        return Authenticated(self._user, server_final.encode())

    def _fake_credential(self) -> tuple[bytes, bytes, bytes, int]:
        """Salt and keys for a user that does not exist: stable per name, never matching."""
        hash_function = _HASHES[self.mechanism]

        def derive(purpose: str) -> bytes:
            message = f"{purpose}\0{self.mechanism}\0{self._user}".encode()
            return hmac.new(self._fake_salt_key, message, hash_function).digest()

        salt = derive("salt")[:FAKE_SALT_BYTES]
        return salt, derive("stored key"), derive("server key"), self._fake_iterations


def _scram_user(mechanism: str, client_first: str) -> str | Failed:
    """The user a client-first message names, checked by scramp's own parser (a probe run
    whose credential lookup only records the name)."""
    named: list[str] = []

    def record(user: str) -> None:
        named.append(user)
        return None  # scramp then stops with "unknown user": the probe has what it needs

    try:
        probe = ScramMechanism(mechanism).make_server(record, s_nonce=_PROBE_NONCE)
        probe.set_client_first(client_first)
    except ScramException as error:
        if named:
            return named[0]
        return Failed(f"malformed SCRAM client-first message: {error}")
    raise AssertionError("scramp accepted a client-first message without a credential")


def _final_failure(mechanism: str, error: ScramException) -> str:
    """A wrong proof is a wrong password (or an unknown user's fake exchange): one message;
    anything else is the client's malformed message and says so."""
    if error.server_error is ServerError.INVALID_PROOF:
        return invalid_credentials(mechanism)
    return f"malformed SCRAM client-final message: {error}"
