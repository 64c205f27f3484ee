"""`streamctl cluster`: the agents of the cluster and what each leads, with every partition's
lease epoch and durable lag.

It speaks Kafka to the agents, as any client does, and never opens the metadata store: Metadata
(from the agent named by --bootstrap) lists the agents and each partition's leader;
DescribeLogDirs, asked of each agent, names it (its one log directory is named after its id)
and sizes the partitions in it (their bytes in the object store); ListOffsets at each leader
gives the durable end (latest-tiered: the last offset in the object store, plus one) and then
the high watermark and lease epoch (latest). The durable lag is the high watermark minus the
durable end; asked in that order, it is never negative.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from kio.schema.errors import ErrorCode as KioErrorCode

from streamhouse.cli.agent_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TIMEOUT_S,
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
    print_json,
    run_command,
    show_rows,
)
from streamhouse.engine.cluster_shape import LOG_DIR_PREFIX
from streamhouse.errors import ErrorCode
from streamhouse.io.kafka_client import KafkaCallFailed, KafkaClient
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.sentinels import LATEST_TIERED_TIMESTAMP, LATEST_TIMESTAMP, NO_LEADER_EPOCH

TopicPartition = tuple[str, int]
READ_UNCOMMITTED = 0
CONSUMER_REPLICA_ID = -1
LEADER_MOVED = {
    ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.FENCED_LEADER_EPOCH,
    ErrorCode.UNKNOWN_LEADER_EPOCH,
    ErrorCode.LEADER_NOT_AVAILABLE,
}
AGENT_COLUMNS = ("node", "agent", "address", "controller", "partitions led", "bytes")
PARTITION_COLUMNS = (
    "topic",
    "partition",
    "leader",
    "lease epoch",
    "high watermark",
    "durable offset",
    "durable lag",
    "bytes",
)


@dataclass(frozen=True)
class Broker:
    """An agent as Metadata lists it."""

    node_id: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LogDirView:
    """What an agent's DescribeLogDirs says: its id and the bytes of each partition in it."""

    agent_id: str
    sizes: dict[TopicPartition, int]


@dataclass(frozen=True)
class Offsets:
    """A partition's offsets at its leader."""

    lease_epoch: int
    high_watermark: int
    durable_offset: int


class LeaderMoved(Exception):
    """A partition's leader changed while the offsets were asked for."""


class ClusterProbe:
    """What streamctl learns of the cluster through the agent at `bootstrap`."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.timeout_s = connection.timeout_s
        self._bootstrap = Broker(-1, *connection.check())
        with self._client(self._bootstrap, "the agent named by --bootstrap") as client:
            self.metadata = client.call(ApiKey.METADATA, _METADATA_OF_EVERY_TOPIC)

    @contextmanager
    def _client(self, broker: Broker, who: str) -> Iterator[KafkaClient]:
        try:
            with self.connection.client(broker.host, broker.port) as client:
                yield client
        except KafkaCallFailed as exc:
            if broker is self._bootstrap:
                raise CommandError(self.connection.unreachable(str(exc))) from exc
            raise CommandError(
                f"{who} ({broker.address}) did not answer: {exc}. If it just left the "
                "cluster, run this again."
            ) from exc

    def brokers(self) -> dict[int, Broker]:
        return {b.node_id: Broker(b.node_id, b.host, b.port) for b in self.metadata.brokers}

    def leaders(self) -> dict[TopicPartition, int]:
        """Each partition's leader node, by topic and partition."""
        return {
            (topic.name, partition.partition_index): partition.leader_id
            for topic in sorted(self.metadata.topics, key=lambda t: t.name)
            if topic.error_code == 0
            for partition in sorted(topic.partitions, key=lambda p: p.partition_index)
        }

    def log_dir(self, broker: Broker) -> LogDirView:
        with self._client(broker, f"agent node {broker.node_id}") as client:
            (result,) = client.call(ApiKey.DESCRIBE_LOG_DIRS, {"topics": None}).results
        sizes = {
            (topic.name, partition.partition_index): partition.partition_size
            for topic in result.topics
            for partition in topic.partitions
        }
        return LogDirView(str(result.log_dir).removeprefix(LOG_DIR_PREFIX), sizes)

    def offsets(self, broker: Broker, tps: list[TopicPartition]) -> dict[TopicPartition, Offsets]:
        """The offsets of partitions `broker` leads; LeaderMoved if it no longer leads one."""
        with self._client(broker, f"agent node {broker.node_id}") as client:
            durable = _list_offsets(client, tps, LATEST_TIERED_TIMESTAMP)
            latest = _list_offsets(client, tps, LATEST_TIMESTAMP)
        return {tp: Offsets(latest[tp][1], latest[tp][0], durable[tp][0] + 1) for tp in tps}


_METADATA_OF_EVERY_TOPIC = {
    "topics": None,  # every topic, and none is auto-created
    "allow_auto_topic_creation": False,
    "include_cluster_authorized_operations": False,
    "include_topic_authorized_operations": False,
}


def _list_offsets(
    client: KafkaClient, tps: list[TopicPartition], timestamp: int
) -> dict[TopicPartition, tuple[int, int]]:
    """ListOffsets at `timestamp` of each partition: (offset, leader epoch)."""
    by_topic: dict[str, list[int]] = {}
    for topic, index in tps:
        by_topic.setdefault(topic, []).append(index)
    request = {
        "replica_id": CONSUMER_REPLICA_ID,
        "isolation_level": READ_UNCOMMITTED,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": i, "timestamp": timestamp, "current_leader_epoch": -1}
                    for i in indexes
                ],
            }
            for topic, indexes in by_topic.items()
        ],
    }
    answer = client.call(ApiKey.LIST_OFFSETS, request)
    found = {}
    for topic in answer.topics:
        for partition in topic.partitions:
            tp = (topic.name, partition.partition_index)
            _check(tp, int(partition.error_code))
            epoch = getattr(partition, "leader_epoch", NO_LEADER_EPOCH)
            found[tp] = (partition.offset, epoch)
    missing = sorted(set(tps) - set(found))
    if missing:
        raise CommandError(f"the agent at {client.address} left out the offsets of {missing}")
    return found


def _check(tp: TopicPartition, code: int) -> None:
    if code == ErrorCode.NONE:
        return
    if code in LEADER_MOVED:
        raise LeaderMoved(f"{tp[0]}-{tp[1]}")
    name = KioErrorCode(code).name.upper()
    raise CommandError(f"listing the offsets of {tp[0]}-{tp[1]} failed: {name}")


# ---------------------------------------------------------------- the view


@dataclass(frozen=True)
class AgentRow:
    node_id: int
    agent_id: str
    address: str
    controller: bool
    partitions_led: int
    size_bytes: int


@dataclass(frozen=True)
class PartitionRow:
    topic: str
    partition: int
    leader: int
    agent_id: str
    lease_epoch: int
    high_watermark: int
    durable_offset: int
    durable_lag: int
    size_bytes: int | None  # None: the leader's log directory did not list it (it just moved)


@dataclass(frozen=True)
class ClusterView:
    cluster_id: str
    controller_id: int
    agents: list[AgentRow]
    partitions: list[PartitionRow]


def cluster_view(connection: Connection) -> ClusterView:
    """The cluster as the agents answer now; asked again, once, if a leader moves meanwhile."""
    try:
        return _view(ClusterProbe(connection))
    except LeaderMoved:
        pass
    try:
        return _view(ClusterProbe(connection))
    except LeaderMoved as moved:
        raise CommandError(
            f"the leader of {moved} kept moving while its offsets were asked for; run again"
        ) from moved


def _view(probe: ClusterProbe) -> ClusterView:
    brokers = probe.brokers()
    log_dirs = {node: probe.log_dir(broker) for node, broker in sorted(brokers.items())}
    leaders = probe.leaders()
    led: dict[int, list[TopicPartition]] = {}
    for tp, node in leaders.items():
        led.setdefault(node, []).append(tp)
    unknown = sorted(set(led) - set(brokers))
    if unknown:
        raise LeaderMoved(f"partitions led by nodes {unknown} that Metadata does not list")
    offsets: dict[TopicPartition, Offsets] = {}
    for node, tps in led.items():
        offsets.update(probe.offsets(brokers[node], tps))
    partitions = [
        _partition_row(tp, node, log_dirs[node], offsets[tp]) for tp, node in leaders.items()
    ]
    controller = probe.metadata.controller_id
    agents = [
        _agent_row(broker, log_dirs[node], controller, partitions)
        for node, broker in sorted(brokers.items())
    ]
    return ClusterView(probe.metadata.cluster_id, controller, agents, partitions)


def _partition_row(
    tp: TopicPartition, node: int, log_dir: LogDirView, offsets: Offsets
) -> PartitionRow:
    return PartitionRow(
        topic=tp[0],
        partition=tp[1],
        leader=node,
        agent_id=log_dir.agent_id,
        lease_epoch=offsets.lease_epoch,
        high_watermark=offsets.high_watermark,
        durable_offset=offsets.durable_offset,
        durable_lag=offsets.high_watermark - offsets.durable_offset,
        size_bytes=log_dir.sizes.get(tp),
    )


def _agent_row(
    broker: Broker, log_dir: LogDirView, controller: int, partitions: list[PartitionRow]
) -> AgentRow:
    mine = [row for row in partitions if row.leader == broker.node_id]
    return AgentRow(
        node_id=broker.node_id,
        agent_id=log_dir.agent_id,
        address=broker.address,
        controller=broker.node_id == controller,
        partitions_led=len(mine),
        size_bytes=sum(row.size_bytes or 0 for row in mine),
    )


# ---------------------------------------------------------------- the command


def show_cluster(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """The agents (node id, agent id, address) and the partitions each leads, with every
    partition's lease epoch, high watermark, durable offset and durable lag (offsets
    acknowledged but not yet in the object store)."""

    def work(probe: ClusterViewer) -> None:
        view = probe.view
        if output is Output.JSON:
            print_json(asdict(view))
            return
        title = f"cluster {view.cluster_id}"
        show_rows([_agent_cells(row) for row in view.agents], AGENT_COLUMNS, output, title)
        cells = [_partition_cells(row) for row in view.partitions]
        show_rows(cells, PARTITION_COLUMNS, output, "partitions")

    run_command(
        ClusterViewer, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file)
    )


class ClusterViewer:
    """`cluster_view` in the shape `run_command` connects with."""

    def __init__(self, connection: Connection) -> None:
        self.view = cluster_view(connection)


def _agent_cells(row: AgentRow) -> dict[str, Any]:
    return {
        "node": row.node_id,
        "agent": row.agent_id,
        "address": row.address,
        "controller": row.controller,
        "partitions led": row.partitions_led,
        "bytes": row.size_bytes,
    }


def _partition_cells(row: PartitionRow) -> dict[str, Any]:
    return {
        "topic": row.topic,
        "partition": row.partition,
        "leader": f"{row.leader} ({row.agent_id})",
        "lease epoch": row.lease_epoch,
        "high watermark": row.high_watermark,
        "durable offset": row.durable_offset,
        "durable lag": row.durable_lag,
        "bytes": row.size_bytes,
    }
