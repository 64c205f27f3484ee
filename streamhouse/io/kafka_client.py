"""A blocking Kafka client of one agent: one connection, each API at the highest version both
sides speak (asked with ApiVersions first), requests built from version-agnostic values.

For the requests `streamctl` sends that librdkafka's admin client does not expose
(DescribeLogDirs, ListOffsets of the durable end); every failure is one `KafkaCallFailed`.
Given credentials, the connection first authenticates (SaslHandshake, then SaslAuthenticate
with PLAIN or SCRAM-SHA-256/512, the SCRAM exchange by the maintained `scramp` library), as a
SASL_PLAINTEXT listener requires; given a CA file, it speaks TLS first (SSL, SASL_SSL).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from scramp import ScramClient, ScramException

from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.client_frames import (
    SIZE,
    SIZE_PREFIX_BYTES,
    UnexpectedResponse,
    request_frame,
    response_body,
    shared_version,
)
from streamhouse.kafka.entities import build

CLIENT_ID = "streamctl"
API_VERSIONS_VERSION = 2  # every agent serves it; its answer lists the rest
RESPONSE_BYTES_MAX = 100 * 1024 * 1024  # the agent's own frame bound (frame_bytes_max)
RECV_CHUNK_BYTES = 64 * 1024


SASL_HANDSHAKE_VERSION = 1  # v1: the tokens travel in SaslAuthenticate requests
PLAIN = "PLAIN"


class KafkaCallFailed(Exception):
    """The agent could not be reached, did not answer in time, or does not serve the API."""


class AuthenticationFailed(KafkaCallFailed):
    """The agent refused the credentials (SASL_AUTHENTICATION_FAILED)."""


class SaslUnavailable(KafkaCallFailed):
    """The agent takes no SASL, or not by this mechanism (UNSUPPORTED_SASL_MECHANISM)."""


@dataclass(frozen=True)
class SaslCredentials:
    """Who the connection says it is: an API key id and its secret, by `mechanism`."""

    mechanism: str  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    user: str
    secret: str


class KafkaClient:
    """One connection to the agent at host:port; every wait bounded by `timeout_s`."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float,
        credentials: SaslCredentials | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.address = f"{host}:{port}"
        self._sock = _connect(host, port, timeout_s, ca_file)
        self._correlation_id = 0
        try:
            answer = self._exchange(ApiKey.API_VERSIONS, API_VERSIONS_VERSION, {})
            self._advertised = {
                int(api.api_key): (int(api.min_version), int(api.max_version))
                for api in answer.api_keys
            }
            if credentials is not None:
                self._authenticate(credentials)
        except KafkaCallFailed:
            self.close()
            raise

    def __enter__(self) -> KafkaClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def serves(self, api_key: ApiKey) -> bool:
        """Whether the agent advertised `api_key` (SaslHandshake: its listener authenticates)."""
        return int(api_key) in self._advertised

    def call(self, api_key: ApiKey, values: Mapping[str, Any]) -> Any:
        """The response to the request `values` describe, at the highest shared version."""
        version = shared_version(api_key, self._advertised)
        if version is None:
            raise KafkaCallFailed(f"the agent at {self.address} does not serve {api_key.name}")
        return self._exchange(api_key, version, values)

    def _authenticate(self, credentials: SaslCredentials) -> None:
        if not self.serves(ApiKey.SASL_HANDSHAKE):
            raise SaslUnavailable(
                f"the agent at {self.address} does not authenticate clients (its listener "
                "takes no SASL): connect without credentials (no API key)"
            )
        handshake = self._exchange(
            ApiKey.SASL_HANDSHAKE, SASL_HANDSHAKE_VERSION, {"mechanism": credentials.mechanism}
        )
        if handshake.error_code != 0:
            offered = ", ".join(handshake.mechanisms)
            raise SaslUnavailable(
                f"the agent at {self.address} does not take SASL {credentials.mechanism} "
                f"(it offers: {offered or 'none'})"
            )
        if credentials.mechanism == PLAIN:
            self._sasl_token(f"\0{credentials.user}\0{credentials.secret}".encode())
            return
        try:
            scram = ScramClient([credentials.mechanism], credentials.user, credentials.secret)
            scram.set_server_first(self._sasl_token(scram.get_client_first().encode()).decode())
            scram.set_server_final(self._sasl_token(scram.get_client_final().encode()).decode())
        except ScramException as error:
            raise AuthenticationFailed(
                f"SASL {credentials.mechanism} with the agent at {self.address} failed "
                f"(SASL_AUTHENTICATION_FAILED): {error}"
            ) from error

    def _sasl_token(self, token: bytes) -> bytes:
        """The agent's answer to one SaslAuthenticate token; a refusal is KafkaCallFailed."""
        answer = self.call(ApiKey.SASL_AUTHENTICATE, {"auth_bytes": token})
        if answer.error_code != 0:
            raise AuthenticationFailed(
                f"the agent at {self.address} refused the credentials "
                f"(SASL_AUTHENTICATION_FAILED): {answer.error_message}"
            )
        return bytes(answer.auth_bytes)

    def _exchange(self, api_key: ApiKey, version: int, values: Mapping[str, Any]) -> Any:
        self._correlation_id += 1
        request = build(codec.request_schema(api_key, version), values)
        try:
            self._sock.sendall(request_frame(request, self._correlation_id, CLIENT_ID))
            payload = self._read_frame()
            return response_body(payload, api_key, version, self._correlation_id)
        except (OSError, UnexpectedResponse) as error:
            raise KafkaCallFailed(
                f"{api_key.name} to the agent at {self.address} failed: {error}"
            ) from error

    def _read_frame(self) -> bytes:
        (size,) = SIZE.unpack(self._read_exactly(SIZE_PREFIX_BYTES))
        if not 0 < size <= RESPONSE_BYTES_MAX:
            raise UnexpectedResponse(f"a response frame of {size} bytes")
        return self._read_exactly(size)

    def _read_exactly(self, size: int) -> bytes:
        chunks: list[bytes] = []
        missing = size
        while missing:
            chunk = self._sock.recv(min(missing, RECV_CHUNK_BYTES))
            if not chunk:
                raise UnexpectedResponse("the agent closed the connection")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)


def _connect(host: str, port: int, timeout_s: float, ca_file: str | None) -> socket.socket:
    """A connection to host:port, over TLS checked against `ca_file` when one is given."""
    address = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as error:
        raise KafkaCallFailed(f"cannot connect to {address}: {error}") from error
    if ca_file is None:
        return sock
    try:
        return ssl.create_default_context(cafile=ca_file).wrap_socket(sock, server_hostname=host)
    except OSError as error:  # ssl.SSLError included; a missing CA file too
        sock.close()
        raise KafkaCallFailed(f"TLS with {address} (CA file {ca_file}) failed: {error}") from error
