"""`streamctl groups`: list, describe, lag, reset-offsets and delete consumer groups.

Like every streamctl command these talk to a running agent over the Kafka protocol
(`agent_client`): group membership lives in the agent's coordinator.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from confluent_kafka import (
    OFFSET_INVALID,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin._group import ConsumerGroupDescription
from confluent_kafka.admin._listoffsets import OffsetSpec
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
    error_code,
    parse_datetime_ms,
    reason,
    run_command,
    say,
    show_rows,
)

groups = typer.Typer(
    help="Inspect and manage consumer groups on a running agent (over the Kafka protocol).",
    no_args_is_help=True,
)

INACTIVE_STATES = {ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN}

GroupId = Annotated[str, typer.Argument(metavar="GROUP", help="The consumer group's id.")]


@dataclass(frozen=True)
class PartitionLag:
    """One row of `groups lag`."""

    topic: str
    partition: int
    committed: int | None
    log_end: int
    owner: str

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.log_end - self.committed)


class GroupAdmin(AgentAdmin):
    """The group admin calls the commands need, failures as CommandError."""

    def list_groups(self) -> list[Any]:
        future = self.admin.list_consumer_groups(request_timeout=self.timeout_s)
        result = self.wait(future, "listing groups")
        return sorted(result.valid, key=lambda listing: listing.group_id)

    def describe(self, group_id: str) -> ConsumerGroupDescription:
        futures = self.admin.describe_consumer_groups([group_id], request_timeout=self.timeout_s)
        description: ConsumerGroupDescription = self.wait(
            futures[group_id], f"describing group {group_id!r}"
        )
        return description

    def committed(self, group_id: str) -> dict[tuple[str, int], int]:
        """The group's committed offsets by (topic, partition)."""
        request = [ConsumerGroupTopicPartitions(group_id)]
        futures = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout_s)
        result = self.wait(futures[group_id], f"fetching the offsets of group {group_id!r}")
        found = {}
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                raise CommandError(f"fetching the offset of {tp.topic}-{tp.partition}: {tp.error}")
            if tp.offset != OFFSET_INVALID:  # librdkafka: no committed offset there
                found[(tp.topic, tp.partition)] = tp.offset
        return found

    def alter(self, group_id: str, targets: Mapping[tuple[str, int], int]) -> None:
        tps = [TopicPartition(topic, part, offset) for (topic, part), offset in targets.items()]
        request = [ConsumerGroupTopicPartitions(group_id, tps)]
        futures = self.admin.alter_consumer_group_offsets(request, request_timeout=self.timeout_s)
        result = self.wait(futures[group_id], f"resetting the offsets of group {group_id!r}")
        failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
        if failed:
            shown = ", ".join(f"{tp.topic}-{tp.partition}: {tp.error}" for tp in failed)
            raise CommandError(f"the agent refused some offsets of group {group_id!r}: {shown}")

    def delete(self, group_id: str) -> None:
        futures = self.admin.delete_consumer_groups([group_id], request_timeout=self.timeout_s)
        try:
            futures[group_id].result(timeout=self.timeout_s)
        except KafkaException as exc:
            code = error_code(exc)
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                raise CommandError(f"no consumer group named {group_id!r}") from exc
            if code == KafkaError.NON_EMPTY_GROUP:
                raise CommandError(
                    f"group {group_id!r} still has active members; stop its consumers first"
                ) from exc
            raise CommandError(f"deleting group {group_id!r} failed: {reason(exc)}") from exc
        except concurrent.futures.TimeoutError as exc:
            raise CommandError(f"deleting group {group_id!r}: no answer in time") from exc

    def known_group(
        self, group_id: str
    ) -> tuple[ConsumerGroupDescription, dict[tuple[str, int], int]]:
        """The group's description and committed offsets; CommandError if it has neither."""
        description = self.describe(group_id)
        committed = self.committed(group_id)
        if description.state in INACTIVE_STATES - {ConsumerGroupState.EMPTY} and not (
            committed or description.members
        ):
            raise CommandError(f"no consumer group named {group_id!r} (no members, no offsets)")
        return description, committed


def _state(description: ConsumerGroupDescription) -> str:
    return description.state.name if description.state is not None else "UNKNOWN"


def _owners(description: ConsumerGroupDescription) -> dict[tuple[str, int], str]:
    owners = {}
    for member in description.members:
        for tp in member.assignment.topic_partitions:
            host = member.host.strip("/")
            owners[(tp.topic, tp.partition)] = (
                f"{member.client_id}@{host}" if host else member.client_id
            )
    return owners


# ---------------------------------------------------------------- commands


@groups.command("list")
def list_groups(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """List the consumer groups the agent knows, with their states."""

    def work(admin: GroupAdmin) -> None:
        rows = [
            {
                "group": listing.group_id,
                "state": listing.state.name if listing.state is not None else "UNKNOWN",
                "simple": listing.is_simple_consumer_group,
            }
            for listing in admin.list_groups()
        ]
        show_rows(rows, ("group", "state", "simple"), output)

    run_command(GroupAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


@groups.command("describe")
def describe_group(
    group_id: GroupId,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Show a group's state, assignor, coordinator and members with their partitions."""

    def work(admin: GroupAdmin) -> None:
        description, _ = admin.known_group(group_id)
        coordinator = description.coordinator
        where = f"{coordinator.host}:{coordinator.port}" if coordinator is not None else "-"
        say(
            f"group [bold]{group_id}[/bold]  state {_state(description)}  "
            f"assignor {description.partition_assignor or '-'}  coordinator {where}"
        )
        table = Table("client", "host", "instance", "partitions")
        table.add_column("member", overflow="fold")
        for member in sorted(description.members, key=lambda m: m.member_id):
            assigned = sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions)
            table.add_row(
                member.client_id,
                member.host or "-",
                member.group_instance_id or "-",
                ", ".join(f"{topic}-{partition}" for topic, partition in assigned) or "-",
                member.member_id,
            )
        say(table)

    run_command(GroupAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


@groups.command("lag")
def group_lag(
    group_id: GroupId,
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="Only this topic's partitions.")
    ] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Per partition: committed offset, log end, lag and owning member; then totals."""

    def work(admin: GroupAdmin) -> None:
        description, committed = admin.known_group(group_id)
        owners = _owners(description)
        tps = sorted(set(committed) | set(owners))
        if topic is not None:
            tps = [tp for tp in tps if tp[0] == topic]
        ends = admin.offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        rows = [
            PartitionLag(t, p, committed.get((t, p)), ends[(t, p)], owners.get((t, p), "-"))
            for t, p in tps
        ]
        say(_lag_table(group_id, rows))

    run_command(GroupAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


def _lag_table(group_id: str, rows: list[PartitionLag]) -> Table:
    table = Table("topic", "partition", "committed", "log end", "lag", "owner", title=group_id)
    for row in rows:
        table.add_row(
            row.topic,
            str(row.partition),
            "-" if row.committed is None else str(row.committed),
            str(row.log_end),
            "-" if row.lag is None else str(row.lag),
            row.owner,
        )
    total_lag = sum(row.lag or 0 for row in rows)
    with_commits = sum(1 for row in rows if row.committed is not None)
    table.add_section()
    table.add_row(
        "total",
        f"{len(rows)} partitions",
        f"{with_commits} committed",
        str(sum(row.log_end for row in rows)),
        str(total_lag),
        "",
    )
    return table


@groups.command("reset-offsets")
def reset_offsets(
    group_id: GroupId,
    topic: Annotated[str, typer.Option("--topic", "-t", help="The topic whose offsets move.")],
    partition: Annotated[
        list[int] | None,
        typer.Option("--partition", "-p", help="Only these partitions (repeatable); default all."),
    ] = None,
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="To each partition's log start.")
    ] = False,
    to_latest: Annotated[bool, typer.Option("--to-latest", help="To each log end.")] = False,
    to_offset: Annotated[
        int | None,
        typer.Option("--to-offset", min=0, help="To this offset (kept within each log)."),
    ] = None,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            "--to-datetime",
            help="To the first record at or after this ISO 8601 time (UTC unless it says).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the new offsets without changing them.")
    ] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Move a group's committed offsets of a topic; only while the group has no members.

    As in Kafka, a group that does not exist yet gets the offsets (and so starts
    from them).
    """
    chosen = [to_earliest, to_latest, to_offset is not None, to_datetime is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime"
        )
    at_ms = None if to_datetime is None else parse_datetime_ms(to_datetime, "--to-datetime")

    def work(admin: GroupAdmin) -> None:
        description = admin.describe(group_id)
        if description.members or description.state not in INACTIVE_STATES:
            raise CommandError(
                f"group {group_id!r} is {_state(description)} with {len(description.members)} "
                "active member(s); offsets can be reset only while a group has no members. "
                "Stop its consumers and retry."
            )
        partitions = admin.partitions(topic)
        if partition:
            missing = sorted(set(partition) - set(partitions))
            if missing:
                raise CommandError(f"topic {topic!r} has no partition(s) {missing}")
            partitions = sorted(set(partition))
        tps = [(topic, index) for index in partitions]
        targets = _targets(admin, tps, to_earliest, to_latest, to_offset, at_ms)
        current = admin.committed(group_id)
        table = Table("topic", "partition", "current", "new", title=f"{group_id} reset")
        for tp in tps:
            old = current.get(tp)
            table.add_row(tp[0], str(tp[1]), "-" if old is None else str(old), str(targets[tp]))
        say(table)
        if dry_run:
            say("dry run: no offset changed")
            return
        admin.alter(group_id, targets)
        say(f"reset {len(targets)} partition(s) of group [bold]{group_id}[/bold]")

    run_command(GroupAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


def _targets(
    admin: GroupAdmin,
    tps: list[tuple[str, int]],
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    at_ms: int | None,
) -> dict[tuple[str, int], int]:
    """The new offset of each partition; out-of-log requests land on the nearest end, as Kafka."""
    earliest = admin.offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    latest = admin.offsets(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
    if to_earliest:
        return earliest
    if to_latest:
        return latest
    if to_offset is not None:
        return {tp: min(max(to_offset, earliest[tp]), latest[tp]) for tp in tps}
    assert at_ms is not None
    by_time = admin.offsets(tps, OffsetSpec.for_timestamp(at_ms))
    # No record at or after the time: the log end, where new records will come.
    return {tp: latest[tp] if by_time[tp] < 0 else by_time[tp] for tp in tps}


@groups.command("delete")
def delete_group(
    group_id: GroupId,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Delete a group without members, and its committed offsets."""

    def work(admin: GroupAdmin) -> None:
        admin.delete(group_id)
        say(f"deleted group [bold]{group_id}[/bold]")

    run_command(GroupAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))
