"""`streamctl produce`: write records to a topic from stdin, a file or the command line, as a
Kafka producer of the running agent (kcat -P, kafka-console-producer), and say where they went.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from rich.table import Table

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
    pairs,
    run_command,
    say,
)
from streamhouse.cli.topics import TopicName

DEFAULT_FLUSH_TIMEOUT_S = 30.0
QUEUE_FULL_WAIT_S = 0.1  # how long to serve delivery reports when librdkafka's queue is full
ERRORS_SHOWN_MAX = 5  # delivery errors listed one by one; the rest are counted
UNKNOWN_OFFSET = -1  # librdkafka's offset of a record sent with acks=0
ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: its partitioner chooses
Headers = list[tuple[str, str | bytes | None]]


class Acks(enum.StrEnum):
    """Kafka's acks, as the agent maps them onto its ack modes."""

    NONE = "0"
    LEADER = "1"
    ALL = "all"


class Compression(enum.StrEnum):
    """librdkafka's compression.type."""

    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


@dataclass
class Delivery:
    """One record sent, and what the agent answered (offset, or the error)."""

    key: bytes | None
    value: bytes
    partition: int = UNKNOWN_OFFSET
    offset: int = UNKNOWN_OFFSET
    error: KafkaError | None = None
    answered: bool = False

    def refused(self, exc: KafkaException) -> None:
        """librdkafka refused the record before sending it."""
        self.answered = True
        error = exc.args[0] if exc.args else None
        self.error = (
            error if isinstance(error, KafkaError) else KafkaError(KafkaError._FAIL, str(exc))
        )

    def report(self, error: KafkaError | None, message: Message) -> None:
        """librdkafka's delivery report of this record."""
        self.answered = True
        self.error = error
        if error is None:
            self.partition = message.partition() or 0
            offset = message.offset()
            self.offset = UNKNOWN_OFFSET if offset is None else offset


def _records(
    lines: Iterator[bytes], separator: bytes | None
) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) of each non-empty line, its line end dropped; split at the first
    `separator` when one is given (a line without it has no key)."""
    for line in lines:
        text = line.removesuffix(b"\n")
        if not text:
            continue
        if separator is not None and separator in text:
            key, _, value = text.partition(separator)
            yield key, value
        else:
            yield None, text


def _lines(values: list[str] | None, file: Path | None) -> Iterator[bytes]:
    """The input lines: each --value, else the file's, else stdin's (read as they come)."""
    if values:
        yield from (value.encode() for value in values)
        return
    if file is not None:
        try:
            with file.open("rb") as opened:
                yield from opened
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        return
    stdin: IO[bytes] = typer.get_binary_stream("stdin")
    yield from stdin


class RecordProducer:
    """A producer of one topic (or one of its partitions); every record's delivery kept."""

    def __init__(self, config: dict[str, Any], topic: str, partition: int | None) -> None:
        self.producer = Producer(config)
        self.topic = topic
        self.partition = partition
        self.deliveries: list[Delivery] = []

    def send(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        delivery = Delivery(key, value)
        partition = ANY_PARTITION if self.partition is None else self.partition
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    value,
                    key,
                    partition,
                    on_delivery=delivery.report,
                    headers=headers,
                )
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self.producer.poll(QUEUE_FULL_WAIT_S)
            except KafkaException as exc:  # refused before sending (too large, …)
                delivery.refused(exc)
                break
        self.deliveries.append(delivery)
        self.producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)


# ---------------------------------------------------------------- output


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def _print_json(topic: str, deliveries: list[Delivery]) -> None:
    """One JSON object per written record, in input order."""
    for delivery in deliveries:
        if delivery.error is None and delivery.answered:
            shown = {
                "topic": topic,
                "partition": delivery.partition,
                "offset": None if delivery.offset == UNKNOWN_OFFSET else delivery.offset,
                "key": _text(delivery.key),
                "value": _text(delivery.value),
            }
            typer.echo(json.dumps(shown, ensure_ascii=False))


def _summary(topic: str, deliveries: list[Delivery]) -> Table:
    """Per partition: how many records were written there, first and last offsets."""
    by_partition: dict[int, list[int]] = {}
    for delivery in deliveries:
        if delivery.error is None and delivery.answered:
            by_partition.setdefault(delivery.partition, []).append(delivery.offset)
    written = sum(len(offsets) for offsets in by_partition.values())
    title = f"produced {written} record(s) to {topic}"
    table = Table("partition", "records", "first offset", "last offset", title=title)
    for partition, offsets in sorted(by_partition.items()):
        known = [offset for offset in offsets if offset != UNKNOWN_OFFSET]
        first, last = (str(min(known)), str(max(known))) if known else ("-", "-")
        table.add_row(str(partition), str(len(offsets)), first, last)
    return table


def _failures(deliveries: list[Delivery], flush_timeout_s: float) -> str | None:
    """What went wrong, if anything: the delivery errors, and the records not answered."""
    failed = [delivery.error for delivery in deliveries if delivery.error is not None]
    unanswered = sum(1 for delivery in deliveries if not delivery.answered)
    if not (failed or unanswered):
        return None
    told = [f"{len(failed) + unanswered} of {len(deliveries)} record(s) not delivered"]
    reasons = sorted({f"{error.name()}: {error.str()}" for error in failed})
    told += reasons[:ERRORS_SHOWN_MAX]
    if len(reasons) > ERRORS_SHOWN_MAX:
        told.append(f"and {len(reasons) - ERRORS_SHOWN_MAX} other error(s)")
    if unanswered:
        told.append(f"{unanswered} unanswered within --flush-timeout {flush_timeout_s:g} s")
    return "; ".join(told)


# ---------------------------------------------------------------- command


def produce(
    topic: TopicName,
    value: Annotated[
        list[str] | None,
        typer.Option(
            "--value",
            "-v",
            metavar="TEXT",
            help="A record to write (repeatable) instead of reading lines from stdin.",
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            dir_okay=False,
            help="Read the records from this file, one a line, instead of stdin.",
        ),
    ] = None,
    key_separator: Annotated[
        str | None,
        typer.Option(
            "--key-separator",
            "-K",
            metavar="SEP",
            help="Split each line at the first SEP into the record's key and value (kcat's "
            "-K); a line without SEP has no key. (--key is your API key, not a record's.)",
        ),
    ] = None,
    partition: Annotated[
        int | None,
        typer.Option(
            "--partition",
            "-p",
            min=0,
            help="Write every record to this partition; default: by key (keyless: spread).",
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", metavar="KEY=VALUE", help="A header on every record (repeatable)."
        ),
    ] = None,
    acks: Annotated[
        Acks,
        typer.Option(
            "--acks",
            help="When the agent answers: 0 never, 1 once the record is in its fsynced WAL, "
            "all once it is in the object store (and committed in metadata).",
        ),
    ] = Acks.ALL,
    compression: Annotated[
        Compression, typer.Option("--compression", help="How the producer compresses batches.")
    ] = Compression.NONE,
    flush_timeout_s: Annotated[
        float,
        typer.Option(
            "--flush-timeout",
            min=0.1,
            help="Seconds each record may wait for its answer; later ones count as failed.",
        ),
    ] = DEFAULT_FLUSH_TIMEOUT_S,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Write records to an existing topic, one a line of stdin (empty lines are skipped), of
    --file, or each --value; then a summary per partition (records, first and last offsets),
    or with --output json one object per record. Exit 1 if any record was not delivered."""
    if value and file is not None:
        raise typer.BadParameter("give --value or --file, not both")
    headers: Headers = [(name, text) for name, text in pairs(header, "--header")]
    separator = key_separator.encode() if key_separator else None

    def work(admin: AgentAdmin) -> None:
        partitions = admin.partitions(topic)
        if partition is not None and partition not in partitions:
            raise CommandError(f"topic {topic!r} has no partition {partition} ({partitions})")
        config = {
            **admin.connection.client_config(),
            "acks": str(acks),
            "compression.type": str(compression),
            "message.timeout.ms": int(flush_timeout_s * 1000),
        }
        producer = RecordProducer(config, topic, partition)
        try:
            for record_key, record_value in _records(_lines(value, file), separator):
                producer.send(record_key, record_value, headers)
        except KeyboardInterrupt:
            errors.print("interrupted: delivering the records read so far")
        producer.flush(flush_timeout_s)
        if output is Output.JSON:
            _print_json(topic, producer.deliveries)
        else:
            say(_summary(topic, producer.deliveries))
        failures = _failures(producer.deliveries, flush_timeout_s)
        if failures is not None:
            raise CommandError(failures)

    run_command(AgentAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))
