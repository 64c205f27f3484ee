"""streamctl's line to a running agent: librdkafka's admin client with every call bounded by a
timeout and every failure turned into one `CommandError` (exit 1, Kafka's error name in the
message), plus the options and output helpers the `topics` and `groups` commands share.

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
from typing import Annotated, Any, TypeVar

import typer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import ListOffsetsResultInfo, OffsetSpec
from confluent_kafka.admin._metadata import ClusterMetadata
from rich.console import Console, RenderableType
from rich.table import Table

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


# An agent started with `--auth required` asks every HTTP door (its API, its schema registry)
# for an API key as HTTP Basic credentials: these options give it, and `key_headers` sends it.
Key = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="STREAMHOUSE_KEY",
        help="Your API key id, when the agent requires keys (--auth required).",
    ),
]
Secret = Annotated[
    str | None,
    typer.Option("--secret", envvar="STREAMHOUSE_SECRET", help="Your API key's secret."),
]
HTTP_UNAUTHORIZED = 401
NEEDS_A_KEY = "give an API key with --key and --secret, or STREAMHOUSE_KEY and STREAMHOUSE_SECRET"


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


class AgentAdmin:
    """An admin client connected to one agent; each call bounded by `timeout_s`."""

    def __init__(self, bootstrap: str, timeout_s: float) -> None:
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.admin = AdminClient(
            {
                "bootstrap.servers": bootstrap,
                "log_level": 0,  # failures are reported once, here, not by librdkafka's logger
                "socket.timeout.ms": int(timeout_s * 1000),
            }
        )
        self.cluster()  # fails early, and clearly, when no agent answers

    def cluster(self) -> ClusterMetadata:
        """Brokers and every topic. All topics: asking for one by name would let the agent
        auto-create it."""
        try:
            return self.admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise CommandError(
                f"cannot reach an agent at {self.bootstrap} within {self.timeout_s:g} s "
                f"({reason(exc)}). Is `streamhouse agent` running there? "
                "Set --bootstrap or STREAMHOUSE_BOOTSTRAP."
            ) from exc

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
    connect: Callable[[str, float], Admin],
    work: Callable[[Admin], None],
    bootstrap: str,
    timeout_s: float,
) -> None:
    """Connect, do the work; a CommandError is printed on stderr and exits 1."""
    try:
        work(connect(bootstrap, timeout_s))
    except CommandError as exc:
        errors.print(f"[red]error:[/red] {exc}")
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


def get_api_json(url: str, timeout_s: float) -> Any | None:
    """The JSON an agent's HTTP API answers at `url`; None when nothing answers there. A
    refusal (the agent's Kafka error name and message) is a CommandError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
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
