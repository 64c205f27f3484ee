"""`streamctl consume`: read a topic's records from the running agent as a Kafka consumer
(kcat -C, kafka-console-consumer) and print them for people (a Rich table) or for scripts (one
JSON object a line).

Without --follow it stops at the end of each partition as seen when it started (the high
watermark; the last stable offset under read_committed), told by librdkafka's partition EOF or
by a record at or past that end. Without --group it assigns the partitions itself and commits
nothing; with one it joins the group and commits what it printed.
"""

from __future__ import annotations

import base64
import enum
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from rich.table import Table
from rich.text import Text

from streamhouse.cli.agent_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TIMEOUT_S,
    AgentAdmin,
    Bootstrap,
    CaFile,
    CommandError,
    Connection,
    Key,
    Mechanism,
    Output,
    OutputFormat,
    SaslMechanism,
    Secret,
    TimeoutS,
    errors,
    parse_datetime_ms,
    reason,
    run_command,
    say,
)
from streamhouse.cli.topics import TopicName

POLL_S = 0.2  # one wait for records; Ctrl-C is seen between two
TABLE_ROWS_MAX = 1000  # rows a table holds before it is printed and a new one begun
UNJOINED_GROUP = "streamctl-consume"  # librdkafka wants a group.id; never joined nor committed
FROM_BEGINNING = "beginning"
FROM_END = "end"
COLUMNS = ("partition", "offset", "timestamp", "key", "value")


class ValueFormat(enum.StrEnum):
    """How keys, values and header values are shown."""

    TEXT = "text"
    HEX = "hex"
    BASE64 = "base64"

    def show(self, data: bytes | None) -> str | None:
        if data is None:
            return None
        if self is ValueFormat.HEX:
            return data.hex()
        if self is ValueFormat.BASE64:
            return base64.b64encode(data).decode()
        return data.decode("utf-8", errors="replace")


class Isolation(enum.StrEnum):
    """Kafka's isolation.level."""

    READ_UNCOMMITTED = "read_uncommitted"
    READ_COMMITTED = "read_committed"


@dataclass(frozen=True)
class StartAt:
    """Where --from starts each partition: one of its ends, an offset, or a time."""

    text: str
    offset: int | None = None
    at_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> StartAt:
        if text in (FROM_BEGINNING, FROM_END):
            return cls(text)
        if text.isdigit():
            return cls(text, offset=int(text))
        return cls(text, at_ms=parse_datetime_ms(text, "--from"))


# ---------------------------------------------------------------- printing


def _record(message: Message, value_format: ValueFormat) -> dict[str, Any]:
    """A consumed record as printed: its place, time (epoch ms), key, value and headers."""
    kind, timestamp_ms = message.timestamp()
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": None if kind == TIMESTAMP_NOT_AVAILABLE else timestamp_ms,
        "key": value_format.show(message.key()),
        "value": value_format.show(message.value()),
        "headers": [[name, value_format.show(value)] for name, value in _headers(message)],
    }


def _headers(message: Message) -> list[tuple[str, bytes | None]]:
    """The record's headers in order, values as bytes."""
    found = message.headers() or []
    listed = list(found.items()) if isinstance(found, dict) else found
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in listed]


def _utc_ms(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "-"
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cells(record: dict[str, Any], with_headers: bool) -> list[Text]:
    """The record's table cells, as literal text (a value is never read as Rich markup)."""
    shown = [
        str(record["partition"]),
        str(record["offset"]),
        _utc_ms(record["timestamp"]),
        "-" if record["key"] is None else record["key"],
        "-" if record["value"] is None else record["value"],
    ]
    if with_headers:
        shown.append(", ".join(f"{name}={value}" for name, value in record["headers"]) or "-")
    return [Text(cell) for cell in shown]


@dataclass
class RecordPrinter:
    """Prints records as asked: JSON lines at once; for people a table of what was read,
    or with --follow one line a record as it comes."""

    output: Output
    follow: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    printed: int = 0

    def show(self, record: dict[str, Any]) -> None:
        self.printed += 1
        if self.output is Output.JSON:
            typer.echo(json.dumps(record, ensure_ascii=False))
        elif self.follow:
            say(Text("  ").join(_cells(record, bool(record["headers"]))))
            sys.stdout.flush()  # seen at once through a pipe too
        else:
            self.rows.append(record)
            if len(self.rows) >= TABLE_ROWS_MAX:
                self.finish()

    def finish(self) -> None:
        """Print the rows held back for a table."""
        if not self.rows:
            return
        with_headers = any(record["headers"] for record in self.rows)
        table = Table()
        for column in COLUMNS[:3]:  # partition, offset, timestamp: always whole
            table.add_column(column, no_wrap=True)
        for column in COLUMNS[3:] + (("headers",) if with_headers else ()):
            table.add_column(column, overflow="fold")
        for record in self.rows:
            table.add_row(*_cells(record, with_headers))
        say(table)
        self.rows.clear()


# ---------------------------------------------------------------- reading


class TopicReader:
    """A consumer of one topic: where each partition starts and ends, the records in between,
    and (in a group) the offsets of what was printed, committed."""

    def __init__(self, config: dict[str, Any], topic: str, timeout_s: float) -> None:
        self.consumer = Consumer(config)
        self.topic = topic
        self.timeout_s = timeout_s
        self.ends: dict[int, int] = {}
        self.pending: set[int] = set()  # assigned partitions not yet read to their end
        self.assigned = False
        self.uncommitted: dict[int, int] = {}  # next offset to read, by partition

    def bounds(self, partitions: list[int]) -> dict[int, int]:
        """Each partition's log start; keeps its end (the high watermark, or the last stable
        offset under read_committed) as `ends`."""
        starts = {}
        for partition in partitions:
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=self.timeout_s
                )
            except KafkaException as exc:
                raise CommandError(
                    f"finding the ends of {self.topic}-{partition}: {reason(exc)}"
                ) from exc
            starts[partition], self.ends[partition] = low, high
        return starts

    def starts(self, partitions: list[int], start: StartAt) -> dict[int, int]:
        """The offset --from names in each partition, kept within its log."""
        lows = self.bounds(partitions)
        if start.text == FROM_BEGINNING:
            return lows
        if start.text == FROM_END:
            return dict(self.ends)
        if start.offset is not None:
            return {p: min(max(start.offset, lows[p]), self.ends[p]) for p in partitions}
        assert start.at_ms is not None
        asked = [TopicPartition(self.topic, p, start.at_ms) for p in partitions]
        try:
            found = self.consumer.offsets_for_times(asked, timeout=self.timeout_s)
        except KafkaException as exc:
            raise CommandError(f"finding offsets by time in {self.topic}: {reason(exc)}") from exc
        # No record at or after the time: the end, where new records will come.
        return {
            tp.partition: self.ends[tp.partition] if tp.offset < 0 else tp.offset for tp in found
        }

    def assign(self, starts: dict[int, int]) -> None:
        """Read these partitions from these offsets, outside any group."""
        self.consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])
        self.pending = {p for p, offset in starts.items() if offset < self.ends[p]}
        self.assigned = True

    def subscribe(self, starts: dict[int, int] | None) -> None:
        """Join the group; each partition it gives starts at `starts` the first time (at the
        group's committed offset when none is given)."""
        started: set[int] = set()

        def on_assign(consumer: Consumer, given: list[TopicPartition]) -> None:
            for tp in given:
                if starts is not None and tp.partition not in started:
                    tp.offset = starts[tp.partition]
                started.add(tp.partition)
                self.pending.add(tp.partition)
            consumer.assign(given)
            self.assigned = True

        def on_revoke(consumer: Consumer, taken: list[TopicPartition]) -> None:
            self.commit()
            for tp in taken:
                self.pending.discard(tp.partition)
            consumer.unassign()

        self.consumer.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke)

    def next_record(self, follow: bool) -> Message | None:
        """The next record to print, None when none came within POLL_S (or it was past the
        end, without --follow). A consumer error is a CommandError."""
        message = self.consumer.poll(POLL_S)
        if message is None:
            return None
        partition = message.partition() or 0
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise CommandError(f"reading {self.topic}: {error.name()}: {error.str()}")
            self.pending.discard(partition)
            return None
        offset = message.offset() or 0
        if follow:
            return message
        if offset >= self.ends[partition]:
            self.pending.discard(partition)
            return None
        if offset + 1 >= self.ends[partition]:
            self.pending.discard(partition)
        return message

    def printed(self, message: Message) -> None:
        """Count the record as read: its next offset is what a group commits."""
        self.uncommitted[message.partition() or 0] = (message.offset() or 0) + 1

    def commit(self, asynchronous: bool = False) -> None:
        """Commit the next offsets of what was printed (in a group)."""
        if not self.uncommitted:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in self.uncommitted.items()]
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
                committed = []
            else:
                committed = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise CommandError(f"committing offsets of {self.topic}: {reason(exc)}") from exc
        self.uncommitted.clear()
        failed = [tp for tp in committed if tp.error is not None]
        if failed:
            shown = ", ".join(f"{tp.partition}: {tp.error}" for tp in failed)
            raise CommandError(f"committing offsets of {self.topic} failed: {shown}")


def _consumer_config(
    connection: Connection, group: str | None, isolation: Isolation
) -> dict[str, Any]:
    return {
        **connection.client_config(),
        "group.id": group or UNJOINED_GROUP,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",  # a group with no committed offset starts at the start
        "enable.partition.eof": True,
        "isolation.level": str(isolation),
        "allow.auto.create.topics": False,
    }


@dataclass(frozen=True)
class ReadOptions:
    """How far to read and how to show it."""

    value_format: ValueFormat
    follow: bool
    max_messages: int | None
    in_group: bool


def _read(reader: TopicReader, printer: RecordPrinter, options: ReadOptions) -> None:
    """Print records until every partition is read to its end (without --follow), --max-messages
    are printed, or Ctrl-C; without --follow, --timeout with nothing read is a CommandError."""
    idle_polls_max = int(reader.timeout_s / POLL_S) + 1
    idle_polls = 0
    while options.follow or not (reader.assigned and not reader.pending):
        if options.max_messages is not None and printer.printed >= options.max_messages:
            return
        message = reader.next_record(options.follow)
        if message is None:
            idle_polls += 1
            if options.in_group and options.follow:
                reader.commit(asynchronous=True)  # caught up: tell the group
            if not options.follow and idle_polls > idle_polls_max:
                raise CommandError(_stuck(reader))
            continue
        idle_polls = 0
        printer.show(_record(message, options.value_format))
        reader.printed(message)


def _consume(
    reader: TopicReader,
    partitions: list[int],
    start_at: StartAt | None,
    printer: RecordPrinter,
    options: ReadOptions,
) -> None:
    """Start each partition where --from (or the group) says, print what is read, and leave:
    on Ctrl-C too, having printed (and in a group committed) what was read."""
    try:
        with _terminate_as_interrupt():
            _start_and_read(reader, partitions, start_at, printer, options)
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM): a clean stop
    finally:
        printer.finish()
        _close(reader, options.in_group)


def _start_and_read(
    reader: TopicReader,
    partitions: list[int],
    start_at: StartAt | None,
    printer: RecordPrinter,
    options: ReadOptions,
) -> None:
    """Assign the partitions at their starts, or join the group; then read."""
    if options.in_group:
        starts = None if start_at is None else reader.starts(partitions, start_at)
        if starts is None:
            reader.bounds(partitions)
        reader.subscribe(starts)
    else:
        reader.assign(reader.starts(partitions, start_at or StartAt(FROM_BEGINNING)))
    _read(reader, printer, options)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a supervisor stopping it) stops reading as Ctrl-C does; the handler
    before is restored after."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _close(reader: TopicReader, in_group: bool) -> None:
    """Commit what was printed (in a group), then leave."""
    try:
        if in_group:
            reader.commit()
    finally:
        reader.consumer.close()


def _stuck(reader: TopicReader) -> str:
    waited = f"within {reader.timeout_s:g} s (--timeout)"
    if not reader.assigned:
        return f"the group gave this consumer no partition of {reader.topic} {waited}"
    return f"partition(s) {sorted(reader.pending)} of {reader.topic} not read to their end {waited}"


# ---------------------------------------------------------------- command


def consume(
    topic: TopicName,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="beginning|end|OFFSET|ISO-TIME",
            help="Where each partition starts: its beginning, its end (only new records), an "
            "offset, or the first record at or after an ISO 8601 time (UTC unless it says). "
            "Default: beginning; with --group, the group's committed offsets.",
        ),
    ] = None,
    partition: Annotated[
        list[int] | None,
        typer.Option(
            "--partition", "-p", min=0, help="Only this partition (repeatable); default all."
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Join this consumer group and commit what was printed; without it the "
            "partitions are assigned directly and nothing is committed.",
        ),
    ] = None,
    max_messages: Annotated[
        int | None,
        typer.Option("--max-messages", "-n", min=1, help="Stop after printing this many."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep waiting for new records until Ctrl-C; without it, stop at the end "
            "each partition had when the command started.",
        ),
    ] = False,
    isolation: Annotated[
        Isolation,
        typer.Option(
            "--isolation",
            help="read_committed skips aborted transactions' records and stops at the last "
            "stable offset.",
        ),
    ] = Isolation.READ_UNCOMMITTED,
    value_format: Annotated[
        ValueFormat,
        typer.Option(
            "--value-format",
            help="How keys, values and header values are shown: text (UTF-8, undecodable "
            "bytes replaced), hex or base64 (exact bytes).",
        ),
    ] = ValueFormat.TEXT,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Print a topic's records: a table of partition, offset, timestamp, key, value (and
    headers when any), one line a record with --follow; with --output json one object a line
    (topic, partition, offset, timestamp in epoch ms, key, value, headers as [name, value]
    pairs) for jq. Ctrl-C stops cleanly (exit 0)."""
    if group is not None and partition:
        raise typer.BadParameter("--group takes the partitions the group gives; drop --partition")
    start_at = None if start is None else StartAt.parse(start)

    options = ReadOptions(value_format, follow, max_messages, group is not None)

    def work(admin: AgentAdmin) -> None:
        partitions = admin.partitions(topic)
        missing = sorted(set(partition or []) - set(partitions))
        if missing:
            raise CommandError(f"topic {topic!r} has no partition(s) {missing} ({partitions})")
        chosen = sorted(set(partition)) if partition else partitions
        reader = TopicReader(_consumer_config(admin.connection, group, isolation), topic, timeout_s)
        printer = RecordPrinter(output, follow)
        _consume(reader, chosen, start_at, printer, options)
        if output is Output.TABLE and not printer.printed:
            start_text = (
                "the group's offsets" if group and start_at is None else start or FROM_BEGINNING
            )
            errors.print(f"no records in {topic} from {start_text}")

    run_command(AgentAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))
