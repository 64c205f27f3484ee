"""`streamctl topics`: list, create, describe, alter-config and delete topics on a running agent.

Every command goes through the agent's Kafka admin API (`agent_client`), so the agent's
rules apply (legal names, partition counts, Kafka's config names, types and bounds) and a
refusal comes back with Kafka's error name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from confluent_kafka.admin._config import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from streamhouse.cli.agent_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_HTTP,
    DEFAULT_TIMEOUT_S,
    AgentAdmin,
    Bootstrap,
    CaFile,
    CommandError,
    Connection,
    Http,
    Key,
    Mechanism,
    Output,
    OutputFormat,
    SaslMechanism,
    Secret,
    TimeoutS,
    errors,
    get_api_json,
    key_headers,
    pairs,
    print_json,
    run_command,
    say,
    show_rows,
)

topics = typer.Typer(
    help="List, create, describe, alter and delete topics on a running agent.",
    no_args_is_help=True,
)

BROKER_DEFAULT_PARTITIONS = -1  # the agent's --num-partitions

TopicName = Annotated[str, typer.Argument(metavar="TOPIC", help="The topic's name.")]
KeyValues = list[str] | None
PAIR = "KEY=VALUE"

# What describe adds for a compacted topic
COMPACTION_COLUMNS = ("cleaned to", "dirty ratio", "last compaction")


class TopicAdmin(AgentAdmin):
    """The topic admin calls the commands need, failures as CommandError."""

    def configs(self, names: list[str]) -> dict[str, dict[str, ConfigEntry]]:
        """Each topic's configs by name."""
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        if not resources:
            return {}
        futures = self.admin.describe_configs(resources, request_timeout=self.timeout_s)
        return {
            resource.name: self.wait(future, f"describing the configs of topic {resource.name!r}")
            for resource, future in futures.items()
        }

    def overrides(self, names: list[str]) -> dict[str, dict[str, str]]:
        """Each topic's configs set on the topic (not defaults)."""
        return {
            name: {
                key: str(entry.value)
                for key, entry in entries.items()
                if ConfigSource(entry.source) is ConfigSource.DYNAMIC_TOPIC_CONFIG
            }
            for name, entries in self.configs(names).items()
        }

    def create(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        try:
            request = NewTopic(name, partitions, config=configs)
        except ValueError as exc:  # librdkafka checks the count's range itself
            raise CommandError(f"creating topic {name!r}: {exc}") from exc
        futures = self.admin.create_topics([request], request_timeout=self.timeout_s)
        self.wait(futures[name], f"creating topic {name!r}")

    def alter(self, name: str, changes: list[ConfigEntry]) -> None:
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=changes)
        futures = self.admin.incremental_alter_configs([resource], request_timeout=self.timeout_s)
        for future in futures.values():
            self.wait(future, f"altering the configs of topic {name!r}")

    def delete(self, name: str) -> None:
        futures = self.admin.delete_topics([name], request_timeout=self.timeout_s)
        self.wait(futures[name], f"deleting topic {name!r}")


# ---------------------------------------------------------------- commands


@topics.command("list")
def list_topics(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """List topics with their partition counts and the configs set on them."""

    def work(admin: TopicAdmin) -> None:
        listed = {
            name: len(meta.partitions)
            for name, meta in admin.cluster().topics.items()
            if meta.error is None
        }
        overrides = admin.overrides(sorted(listed))
        rows = [
            {"topic": name, "partitions": count, "configs": overrides.get(name, {})}
            for name, count in sorted(listed.items())
        ]
        show_rows(rows, ("topic", "partitions", "configs"), output)

    run_command(TopicAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


@topics.command("create")
def create_topic(
    name: TopicName,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions", "-p", help="Partition count; default: the agent's --num-partitions."
        ),
    ] = BROKER_DEFAULT_PARTITIONS,
    config: Annotated[
        KeyValues, typer.Option("--config", "-c", metavar=PAIR, help="A topic config (repeatable).")
    ] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Create a topic; the agent checks its name, partition count and configs."""
    configs = dict(pairs(config, "--config"))

    def work(admin: TopicAdmin) -> None:
        admin.create(name, partitions, configs)
        count = len(admin.partitions(name))
        say(f"created topic [bold]{name}[/bold] with {count} partition(s)")

    run_command(TopicAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


@topics.command("describe")
def describe_topic(
    name: TopicName,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    http: Http = DEFAULT_HTTP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Per partition: leader, leader epoch, log start, high watermark, and its bytes and
    objects in the bucket (from the agent's HTTP API, --http), for a compacted topic also
    where cleaning got to, the dirty ratio and the last compaction; then the configs."""

    def work(admin: TopicAdmin) -> None:
        entries = admin.configs([name])[name]  # first: an unknown topic is refused here
        rows = _partition_rows(admin, name)
        columns = ["partition", "leader", "leader epoch", "log start", "high watermark"]
        if _add_storage(rows, http, name, admin.connection):
            columns += ["bytes", "objects"]
            policy = entries.get("cleanup.policy")
            if policy is not None and "compact" in (policy.value or "").split(","):
                columns += list(COMPACTION_COLUMNS)
        configs = [
            {"config": key, "value": entry.value, "source": ConfigSource(entry.source).name}
            for key, entry in sorted(entries.items())
        ]
        if output is Output.JSON:
            print_json({"topic": name, "partitions": rows, "configs": configs})
            return
        show_rows(rows, columns, output, title=name)
        show_rows(configs, ("config", "value", "source"), output)

    run_command(TopicAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


def _add_storage(rows: list[dict[str, Any]], http: str, name: str, connection: Connection) -> bool:
    """Each row's bytes in the bucket and objects, as the agent's HTTP API has them (asked with
    the same API key); False (said on stderr) when no API answers at `http`."""
    url = f"{http.rstrip('/')}/api/v1/topics/{name}/partitions"
    headers = key_headers(connection.key, connection.secret)
    answer = get_api_json(url, headers, connection.timeout_s)
    if answer is None:
        errors.print(f"bytes and objects not shown: no agent HTTP API answers at {http} (--http)")
        return False
    stored = {shown["partition"]: shown for shown in answer["partitions"]}
    for row in rows:
        shown = stored.get(row["partition"], {})
        row["bytes"] = shown.get("size_bytes", 0)
        row["objects"] = shown.get("object_count", 0)
        row["cleaned to"] = shown.get("cleaned_end_offset", 0)
        row["dirty ratio"] = round(float(shown.get("dirty_ratio", 0.0)), 3)
        compacted_ms = shown.get("compacted_ms")
        row["last compaction"] = None if compacted_ms is None else _utc(compacted_ms)
    return True


def _utc(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="seconds")


def _partition_rows(admin: TopicAdmin, name: str) -> list[dict[str, Any]]:
    cluster = admin.cluster()
    brokers = {node: f"{b.host}:{b.port}" for node, b in cluster.brokers.items()}
    partitions = cluster.topics[name].partitions
    tps = [(name, index) for index in sorted(partitions)]
    starts = admin.offsets(tps, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    ends = admin.offset_infos(tps, OffsetSpec.latest())  # type: ignore[no-untyped-call]
    return [
        {
            "partition": index,
            "leader": f"{partitions[index].leader} ({brokers.get(partitions[index].leader, '?')})",
            "leader epoch": ends[(topic, index)].leader_epoch,
            "log start": starts[(topic, index)],
            "high watermark": ends[(topic, index)].offset,
        }
        for topic, index in tps
    ]


@topics.command("alter-config")
def alter_config(
    name: TopicName,
    set_: Annotated[
        KeyValues, typer.Option("--set", metavar=PAIR, help="Set a config (repeatable).")
    ] = None,
    delete: Annotated[
        list[str] | None,
        typer.Option("--delete", metavar="KEY", help="Back to its default (repeatable)."),
    ] = None,
    append: Annotated[
        KeyValues,
        typer.Option("--append", metavar=PAIR, help="Add items to a list config (repeatable)."),
    ] = None,
    subtract: Annotated[
        KeyValues,
        typer.Option(
            "--subtract", metavar=PAIR, help="Remove items from a list config (repeatable)."
        ),
    ] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Change some of a topic's configs (the others stay); shows the configs set after."""
    changes = [
        ConfigEntry(key, value, incremental_operation=operation)
        for items, option, operation in (
            (set_, "--set", AlterConfigOpType.SET),
            (append, "--append", AlterConfigOpType.APPEND),
            (subtract, "--subtract", AlterConfigOpType.SUBTRACT),
        )
        for key, value in pairs(items, option)
    ]
    changes += [
        ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)
        for key in delete or []
    ]
    if not changes:
        raise typer.BadParameter("give at least one --set, --delete, --append or --subtract")

    def work(admin: TopicAdmin) -> None:
        admin.alter(name, changes)
        overrides = admin.overrides([name])[name]
        rows = [{"config": key, "value": value} for key, value in sorted(overrides.items())]
        show_rows(rows, ("config", "value"), Output.TABLE, title=f"{name}: configs set")

    run_command(TopicAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))


@topics.command("delete")
def delete_topic(
    name: TopicName,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Delete a topic and every record in it (asks first unless --yes)."""

    def work(admin: TopicAdmin) -> None:
        count = len(admin.partitions(name))
        question = f"Delete topic {name!r} ({count} partition(s)) and every record in it?"
        if not yes and not typer.confirm(question):
            raise CommandError(f"topic {name!r} kept (not confirmed)")
        admin.delete(name)
        say(f"deleted topic [bold]{name}[/bold]")

    run_command(TopicAdmin, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file))
