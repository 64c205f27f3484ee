"""streamctl's line to a running agent: how to reach its Kafka listener (`Connection`: where,
within what time, as which API key, over TLS or not), librdkafka's admin client with every call
bounded by a timeout and every failure turned into one `CommandError` (exit 1, Kafka's error
name in the message), plus the options and output helpers the commands share.

streamctl never opens the metadata store: the agent applies its rules (engine.admin) to
whatever the operator asks, as it does for any Kafka client.
"""

from __future__ import annotations

import base64
import concurrent.futures
import enum
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import ListOffsetsResultInfo, OffsetSpec
from confluent_kafka.admin._metadata import ClusterMetadata
from rich.console import Console, RenderableType
from rich.table import Table

from streamhouse.io.kafka_client import (
    AuthenticationFailed,
    KafkaCallFailed,
    KafkaClient,
    SaslCredentials,
    SaslUnavailable,
)
from streamhouse.kafka.apis import ApiKey

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_TIMEOUT_S = 10.0
EXIT_FAILED = 1
LEADER_MOVED = {
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
}

console = Console()
errors = Console(stderr=True)

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        "-b",
        envvar="STREAMHOUSE_BOOTSTRAP",
        help="host:port of a running agent's Kafka listener.",
    ),
]
DEFAULT_HTTP = "http://127.0.0.1:8080"
Http = Annotated[
    str,
    typer.Option(
        "--http",
        envvar="STREAMHOUSE_HTTP",
        help="Base URL of a running agent's HTTP door (its /api/v1).",
    ),
]
TimeoutS = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer from the agent."),
]


class Output(enum.StrEnum):
    """How a listing is printed."""

    TABLE = "table"
    JSON = "json"


OutputFormat = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts.")
]


class CommandError(Exception):
    """A failure said to the operator as one message, with exit code 1."""


# An agent started with `--auth required` asks every door for an API key: its HTTP doors (its
# API, its schema registry) as HTTP Basic credentials (`key_headers`), its Kafka listener by
# SASL (`Connection`). These options give it, to every command.
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="STREAMHOUSE_KEY",
        help="Your API key id, when the agent requires keys (--auth required); "
        "what you see and change is your key's org's.",
    ),
]
Secret = Annotated[
    str | None,
    typer.Option("--secret", envvar="STREAMHOUSE_SECRET", help="Your API key's secret."),
]
HTTP_UNAUTHORIZED = 401
NEEDS_A_KEY = "give an API key with --key and --secret, or STREAMHOUSE_KEY and STREAMHOUSE_SECRET"


class SaslMechanism(enum.StrEnum):
    """How an API key authenticates at the Kafka listener."""

    SCRAM_SHA_512 = "SCRAM-SHA-512"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    PLAIN = "PLAIN"


Mechanism = Annotated[
    SaslMechanism,
    typer.Option(
        "--sasl-mechanism",
        envvar="STREAMHOUSE_SASL_MECHANISM",
        help="SASL mechanism of the key at the Kafka listener. SCRAM proves the secret without "
        "sending it; PLAIN sends it (use it only with --ca-file).",
    ),
]
CaFile = Annotated[
    str | None,
    typer.Option(
        "--ca-file",
        envvar="STREAMHOUSE_CA_FILE",
        help="PEM file of the CA that signed the agent's certificate: speak TLS to its Kafka "
        "listener (SASL_SSL with a key), as --kafka-security-protocol SASL_SSL requires.",
    ),
]


def pairs(items: list[str] | None, option: str) -> list[tuple[str, str]]:
    """KEY=VALUE option values as pairs; a usage error (exit 2) otherwise."""
    found = []
    for item in items or []:
        key, equals, value = item.partition("=")
        if not (key and equals):
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        found.append((key, value))
    return found


def parse_datetime_ms(text: str, option: str) -> int:
    """An ISO 8601 time (UTC unless it says) as epoch milliseconds; a usage error otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00 or ...+02:00)",
            param_hint=option,
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def key_headers(key: str | None, secret: str | None) -> dict[str, str]:
    """The Authorization header carrying an API key as HTTP Basic credentials; none without a
    key. A key without its secret is a CommandError (it could only be refused)."""
    if key is None:
        return {}
    if secret is None:
        raise CommandError("--key needs --secret (or STREAMHOUSE_SECRET)")
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def reason(exc: KafkaException) -> str:
    """Kafka's error name and message, e.g. "TOPIC_ALREADY_EXISTS: Topic 'x' already exists"."""
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return str(exc)


def error_code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


@dataclass(frozen=True)
class Connection:
    """How every Kafka-speaking command reaches the agent at `bootstrap`: the one place that
    turns the options into librdkafka's settings and into our own client's."""

    bootstrap: str
    timeout_s: float
    key: str | None = None
    secret: str | None = None
    mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    ca_file: str | None = None

    @property
    def security_protocol(self) -> str:
        return ("SASL_" if self.key is not None else "") + ("SSL" if self.ca_file else "PLAINTEXT")

    def credentials(self) -> SaslCredentials | None:
        """The key as SASL credentials; none without a key, a CommandError without its secret."""
        if self.key is None:
            return None
        if self.secret is None:
            raise CommandError("--key needs --secret (or STREAMHOUSE_SECRET)")
        return SaslCredentials(str(self.mechanism), self.key, self.secret)

    def client_config(self) -> dict[str, Any]:
        """librdkafka's settings for this connection."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "log_level": 0,  # failures are reported once, by streamctl, not by librdkafka's logger
            "socket.timeout.ms": int(self.timeout_s * 1000),
            "security.protocol": self.security_protocol,
        }
        credentials = self.credentials()
        if credentials is not None:
            config["sasl.mechanisms"] = credentials.mechanism
            config["sasl.username"] = credentials.user
            config["sasl.password"] = credentials.secret
        if self.ca_file:
            config["ssl.ca.location"] = self.ca_file
        return config

    def addresses(self) -> list[tuple[str, int]]:
        """Each host:port of --bootstrap, which may list several, comma-separated (as
        librdkafka takes it)."""
        found = []
        for entry in self.bootstrap.split(","):
            host, _, port = entry.strip().rpartition(":")
            if not (host and port.isdigit()):
                raise CommandError(
                    f"--bootstrap must be host:port, not {entry!r} (several: host:port,host:port)"
                )
            found.append((host, int(port)))
        return found

    def client(self, host: str, port: int) -> KafkaClient:
        """Our own Kafka client of the agent at host:port, authenticated as this connection."""
        return KafkaClient(host, port, self.timeout_s, self.credentials(), self.ca_file or None)

    def check(self) -> tuple[str, int]:
        """The first agent of --bootstrap that answers, reached once and authenticated when a
        key is given, so that a refused key or a missing one is said plainly and at once
        (librdkafka would retry until the timeout and report a transport failure)."""
        failures = []
        for host, port in self.addresses():
            try:
                with self.client(host, port) as client:
                    self._require_a_key_if_asked(client)
                return host, port
            except AuthenticationFailed as exc:
                raise CommandError(
                    f"{exc}. Check the key and its secret (--key/--secret or STREAMHOUSE_KEY/"
                    "STREAMHOUSE_SECRET), that the key is not revoked, and --sasl-mechanism "
                    f"({self.mechanism})"
                ) from exc
            except SaslUnavailable as exc:
                raise CommandError(f"UNSUPPORTED_SASL_MECHANISM: {exc}") from exc
            except KafkaCallFailed as exc:
                failures.append(str(exc))
        raise CommandError(self.unreachable("; ".join(failures)))

    def _require_a_key_if_asked(self, client: KafkaClient) -> None:
        """A listener that advertises SaslHandshake authenticates every client: without a key,
        say so now rather than as the disconnect that would follow."""
        if self.key is None and client.serves(ApiKey.SASL_HANDSHAKE):
            raise CommandError(f"the agent at {client.address} requires an API key: {NEEDS_A_KEY}")

    def unreachable(self, why: str) -> str:
        """What to say when the bootstrap agent does not answer."""
        told = (
            f"cannot reach an agent at {self.bootstrap} within {self.timeout_s:g} s ({why}). "
            "Is `streamhouse agent` running there? Set --bootstrap or STREAMHOUSE_BOOTSTRAP."
        )
        if self.key is None:
            told += f" If the agent requires API keys (--auth required), {NEEDS_A_KEY}."
        if not self.ca_file:
            told += " If its listener speaks TLS, give its CA with --ca-file."
        return told


class AgentAdmin:
    """An admin client connected to one agent; each call bounded by `timeout_s`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.bootstrap = connection.bootstrap
        self.timeout_s = connection.timeout_s
        connection.check()
        self.admin = AdminClient(connection.client_config())
        self.cluster()  # fails early, and clearly, when no agent answers

    def cluster(self) -> ClusterMetadata:
        """Brokers and every topic. All topics: asking for one by name would let the agent
        auto-create it."""
        try:
            return self.admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise CommandError(self.connection.unreachable(reason(exc))) from exc

    def wait(self, future: concurrent.futures.Future[Any], what: str) -> Any:
        """The future's result; a refusal or no answer in time is a CommandError about `what`."""
        try:
            return future.result(timeout=self.timeout_s)
        except KafkaException as exc:
            raise CommandError(f"{what} failed: {reason(exc)}") from exc
        except concurrent.futures.TimeoutError as exc:
            raise CommandError(
                f"{what}: the agent at {self.bootstrap} did not answer within {self.timeout_s:g} s"
            ) from exc

    def partitions(self, topic: str) -> list[int]:
        """The topic's partition ids; CommandError if it does not exist."""
        found = self.cluster().topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise CommandError(f"topic {topic!r} does not exist (UNKNOWN_TOPIC_OR_PART)")
        return sorted(found.partitions)

    def offset_infos(
        self, tps: Sequence[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], ListOffsetsResultInfo]:
        """ListOffsets: the offset `spec` names (earliest, latest or by time) in each
        partition, with its timestamp and the partition's leader epoch. Asked again once,
        with fresh metadata, when the leader moved or took its lease meanwhile (at a newer
        epoch than the client knew)."""
        if not tps:
            return {}
        request = {TopicPartition(topic, partition): spec for topic, partition in tps}
        try:
            return self._list_offsets(request)
        except KafkaException as exc:
            if error_code(exc) not in LEADER_MOVED:
                raise CommandError(f"listing offsets failed: {reason(exc)}") from exc
        self.cluster()
        try:
            return self._list_offsets(request)
        except KafkaException as exc:
            raise CommandError(f"listing offsets failed: {reason(exc)}") from exc

    def _list_offsets(
        self, request: dict[TopicPartition, OffsetSpec]
    ) -> dict[tuple[str, int], ListOffsetsResultInfo]:
        futures = self.admin.list_offsets(request, request_timeout=self.timeout_s)
        answers = {}
        for tp, future in futures.items():
            try:
                answers[(tp.topic, tp.partition)] = future.result(timeout=self.timeout_s)
            except concurrent.futures.TimeoutError as exc:
                raise CommandError(
                    f"listing offsets of {tp.topic}: the agent at {self.bootstrap} did not "
                    f"answer within {self.timeout_s:g} s"
                ) from exc
        return answers

    def offsets(
        self, tps: Sequence[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        """The offset `spec` names in each partition."""
        return {tp: info.offset for tp, info in self.offset_infos(tps, spec).items()}


Admin = TypeVar("Admin")  # what `connect` makes: an AgentAdmin, or what a command asks through


def run_command(
    connect: Callable[[Connection], Admin], work: Callable[[Admin], None], connection: Connection
) -> None:
    """Connect, do the work; a CommandError is printed on stderr and exits 1."""
    try:
        work(connect(connection))
    except CommandError as exc:
        # soft_wrap: one line however narrow the terminal, for a script to grep
        errors.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from exc


def cell(value: Any) -> str:
    """A value as a table shows it: "-" for none, "k=v, …" for a mapping."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)


def show_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    output: Output,
    title: str | None = None,
) -> None:
    """A listing: a table of `columns` (the rows' keys), or the rows as a JSON array."""
    if output is Output.JSON:
        print_json([dict(row) for row in rows])
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(cell(row[column]) for column in columns))
    console.print(table)


def get_api_json(url: str, headers: Mapping[str, str], timeout_s: float) -> Any | None:
    """The JSON an agent's HTTP API answers at `url`; None when nothing answers there. A
    refusal (the agent's Kafka error name and message) is a CommandError."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        try:
            refused = json.loads(error.read())
            detail = f"{refused['error']}: {refused['message']}"
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {error.code}"
        raise CommandError(f"{url} refused: {detail}") from error
    except (OSError, ValueError):
        return None


def call_json_api(
    method: str,
    url: str,
    body: Any,
    headers: Mapping[str, str],
    timeout_s: float,
    refusal: Callable[[dict[str, Any], int], str],
    unreachable: str,
) -> Any:
    """The JSON an HTTP API answers; a refusal is a CommandError worded by `refusal(body,
    status)` (a 401 to a call without a key also says how to give one), no answer one saying
    `unreachable` and why."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            detail = refusal(json.loads(error.read()), error.code)
        except (ValueError, KeyError, TypeError):
            detail = f"HTTP {error.code}"
        if error.code == HTTP_UNAUTHORIZED and "Authorization" not in headers:
            detail += f" ({NEEDS_A_KEY})"
        raise CommandError(detail) from error
    except (OSError, ValueError) as error:
        raise CommandError(f"{unreachable} ({error})") from error


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout, for scripts (no colours, no wrapping)."""
    typer.echo(json.dumps(value, indent=2))


def say(shown: RenderableType) -> None:
    """A line or a table for the operator, on stdout."""
    console.print(shown)
