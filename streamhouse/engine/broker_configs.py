"""The agent's broker configs as DescribeConfigs shows a BROKER resource.

Kafka's names where Kafka has the setting (num.partitions, auto.create.topics.enable, group.*,
offsets.*, and the log.* defaults every topic inherits), `streamhouse.*` for what only a
diskless agent has. Every one is read-only: an agent's settings are fixed when it starts. The
source is STATIC_BROKER_CONFIG where a flag or environment variable moved the setting off its
default, DEFAULT_CONFIG otherwise (and for what no agent can change).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from streamhouse.config import Settings
from streamhouse.log.topic_configs import (
    ConfigEntry,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
    topic_config_specs,
)

REPLICATION_FACTOR = 1  # the object store is the replica: one copy per partition, its leader's
RESPONSE_PARTITIONS_MAX = 2000  # DescribeTopicPartitions, per response (Kafka's default limit)
MINUTE_MS = 60_000
DEFAULTS = Settings()


@dataclass(frozen=True)
class _Setting:
    """A broker config showing one field of the settings (converted to Kafka's unit)."""

    name: str
    type: ConfigType
    field: str
    documentation: str
    render: Callable[[object], str] = str

    def entry(self, shown: Settings, configured: Settings) -> ConfigEntry:
        value = self.render(getattr(shown, self.field))
        default = self.render(getattr(DEFAULTS, self.field))
        if getattr(configured, self.field) == getattr(DEFAULTS, self.field):
            return _entry(self.name, value, self.type, ConfigSource.DEFAULT_CONFIG, self)
        synonyms = (
            ConfigSynonym(self.name, value, ConfigSource.STATIC_BROKER_CONFIG),
            ConfigSynonym(self.name, default, ConfigSource.DEFAULT_CONFIG),
        )
        return replace(
            _entry(self.name, value, self.type, ConfigSource.STATIC_BROKER_CONFIG, self),
            synonyms=synonyms,
        )


@dataclass(frozen=True)
class _Fixed:
    """A broker config no agent can change (or, `source` STATIC, one each agent is given)."""

    name: str
    type: ConfigType
    value: str
    documentation: str
    source: ConfigSource = ConfigSource.DEFAULT_CONFIG

    def entry(self, shown: Settings, configured: Settings) -> ConfigEntry:
        return _entry(self.name, self.value, self.type, self.source, self)


def _entry(
    name: str, value: str, kind: ConfigType, source: ConfigSource, spec: _Setting | _Fixed
) -> ConfigEntry:
    return ConfigEntry(
        name,
        value,
        kind,
        source,
        read_only=True,
        synonyms=(ConfigSynonym(name, value, source),),
        documentation=spec.documentation,
    )


def _flag(value: object) -> str:
    return "true" if value else "false"


def _minutes(value: object) -> str:
    assert isinstance(value, int), value
    return str(value // MINUTE_MS)


_SETTINGS = (
    _Setting(
        "num.partitions",
        ConfigType.INT,
        "num_partitions",
        "Partitions of an auto-created topic, and of CreateTopics asking for the default.",
    ),
    _Setting(
        "auto.create.topics.enable",
        ConfigType.BOOLEAN,
        "auto_create_topics",
        "Metadata requests for a missing topic create it.",
        _flag,
    ),
    _Setting(
        "message.max.bytes",
        ConfigType.INT,
        "batch_bytes_max",
        "The largest record batch a producer may send (the default of max.message.bytes).",
    ),
    _Setting("socket.request.max.bytes", ConfigType.INT, "frame_bytes_max", "The largest request."),
    _Setting(
        "max.connections",
        ConfigType.INT,
        "connections_max",
        "Connections the agent keeps open at once; one more is closed at once.",
    ),
    _Setting(
        "group.initial.rebalance.delay.ms",
        ConfigType.INT,
        "group_initial_rebalance_delay_ms",
        "How long a new group waits for more members before its first generation.",
    ),
    _Setting(
        "group.min.session.timeout.ms",
        ConfigType.INT,
        "group_min_session_timeout_ms",
        "The shortest session timeout a group member may ask for.",
    ),
    _Setting(
        "group.max.session.timeout.ms",
        ConfigType.INT,
        "group_max_session_timeout_ms",
        "The longest session timeout a group member may ask for.",
    ),
    _Setting("group.max.size", ConfigType.INT, "group_max_size", "Members of one group, at most."),
    _Setting(
        "offsets.retention.minutes",
        ConfigType.INT,
        "offsets_retention_ms",
        "How long an empty group's committed offsets are kept.",
        _minutes,
    ),
    _Setting(
        "offsets.retention.check.interval.ms",
        ConfigType.LONG,
        "offsets_retention_check_interval_ms",
        "How often expired committed offsets are looked for.",
    ),
    _Setting(
        "log.retention.check.interval.ms",
        ConfigType.LONG,
        "retention_check_interval_ms",
        "How often each agent applies retention to the partitions it leads (0 or -1: never).",
    ),
    _Setting(
        "offset.metadata.max.bytes",
        ConfigType.INT,
        "offset_metadata_max_bytes",
        "The largest metadata string an offset commit may carry.",
    ),
    _Setting(
        "producer.id.expiration.ms",
        ConfigType.INT,
        "producer_id_expiration_ms",
        "How long an idempotent producer's state is kept after its last append.",
    ),
    _Setting(
        "streamhouse.agent.id",
        ConfigType.STRING,
        "agent_id",
        "The agent's id in the metadata store (generated once and kept on its disk by default).",
    ),
    _Setting(
        "streamhouse.flush.interval.ms",
        ConfigType.INT,
        "flush_interval_ms",
        "The longest a batch waits before its object is flushed (the acks=all window).",
    ),
    _Setting(
        "streamhouse.flush.bytes.max",
        ConfigType.INT,
        "flush_bytes_max",
        "Pending bytes that start a flush at once.",
    ),
    _Setting(
        "streamhouse.lease.ttl.ms",
        ConfigType.INT,
        "lease_ttl_ms",
        "How long a partition lease lasts unless renewed.",
    ),
    _Setting(
        "streamhouse.topic.partitions.max",
        ConfigType.INT,
        "topic_partitions_max",
        "Partitions of one topic, at most.",
    ),
)
_FIXED = (
    _Fixed(
        "default.replication.factor",
        ConfigType.INT,
        str(REPLICATION_FACTOR),
        "Every partition has one replica: its lease holder, backed by the object store.",
    ),
    _Fixed(
        "min.insync.replicas",
        ConfigType.INT,
        str(REPLICATION_FACTOR),
        "acks=all waits until the batch is in the object store and committed in metadata.",
    ),
    _Fixed(
        "max.request.partition.size.limit",
        ConfigType.INT,
        str(RESPONSE_PARTITIONS_MAX),
        "Partitions one DescribeTopicPartitions response holds, at most.",
    ),
)
_INHERITED_BY_TOPICS = {  # broker config: the topic config whose default it is
    "log.cleanup.policy": "cleanup.policy",
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
}


def broker_configs(settings: Settings, node_id: int, agent_id: str) -> list[ConfigEntry]:
    """Every broker config of the agent with these settings, node id and agent id, by name."""
    shown = replace(settings, agent_id=agent_id)
    static = ConfigSource.STATIC_BROKER_CONFIG  # the node id is given at registration
    identity = (
        _Fixed("node.id", ConfigType.INT, str(node_id), "The agent's node id.", static),
        _Fixed("broker.id", ConfigType.INT, str(node_id), "The agent's node id (node.id).", static),
    )
    entries = [spec.entry(shown, settings) for spec in (*_SETTINGS, *_FIXED, *identity)]
    specs = topic_config_specs(settings.batch_bytes_max)
    entries += [
        _Fixed(
            name,
            specs[topic_name].type,
            specs[topic_name].default,
            f"The default of the topic config {topic_name}.",
        ).entry(shown, settings)
        for name, topic_name in _INHERITED_BY_TOPICS.items()
    ]
    return sorted(entries, key=lambda entry: entry.name)
