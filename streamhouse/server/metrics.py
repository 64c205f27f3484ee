"""Prometheus metrics of one agent, read from the engine's counters at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from streamhouse.engine.compactor import CompactionStats
from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.merger import MergeStats
from streamhouse.engine.quotas import OrgTraffic
from streamhouse.engine.reconciler import Reconciler
from streamhouse.engine.retention import RetentionStats
from streamhouse.engine.schema_registry import RegistryStats
from streamhouse.engine.snapshots import SnapshotWriter
from streamhouse.engine.transactions import TransactionStats
from streamhouse.server.kafka_listener import ListenerStats

PREFIX = "streamhouse"
# A background service's counters, exported as streamhouse_<component>_<field>_total
BackgroundStats = MergeStats | RetentionStats | CompactionStats | RegistryStats


@dataclass(frozen=True)
class AgentGauges:
    """Point-in-time values the collector cannot read from the log store itself."""

    kafka_connections: int
    transactions_open: int = 0  # coordinated here: Ongoing or being completed
    transactions_completing: int = 0  # decided, markers being written


class AgentCollector(Collector):
    """Turns the WAL, flush and recovery counters of a log store, and the Kafka listener's,
    into metric families."""

    def __init__(
        self,
        log: LogStore,
        gauges: Callable[[], AgentGauges],
        kafka: ListenerStats,
        transactions: TransactionStats | None = None,
        reconciler: Reconciler | None = None,
        snapshots: SnapshotWriter | None = None,
        background: Mapping[str, BackgroundStats] | None = None,
        traffic: Mapping[str, OrgTraffic] | None = None,
    ) -> None:
        self._log = log
        self._traffic = traffic if traffic is not None else {}  # by org, kept by the quotas
        # counters of the background services by metric component (merge, retention, ...)
        self._background = dict(background or {})
        self._snapshots = snapshots
        self._reconciler = reconciler
        self._gauges = gauges
        self._kafka = kafka
        self._transactions = transactions or TransactionStats()

    def collect(self) -> Iterator[Metric]:
        yield from _counters("wal", asdict(self._log.wal.stats))
        yield from _counters("flush", asdict(self._log.flusher.stats))
        yield from _counters("recovery", asdict(self._log.recovery))
        yield from _counters("kafka", asdict(self._kafka))
        yield from _counters("transactions", asdict(self._transactions))
        if self._reconciler is not None:
            yield from _counters("reconcile", asdict(self._reconciler.stats))
            yield _gauge(
                "objects_damaged",
                "Objects that segment rows point into but that are missing from the bucket or "
                "corrupt, as the last reconcile run and reads since found them "
                "(`streamctl admin reconcile` lists them).",
                self._reconciler.damaged.count,
            )
        for component, stats in sorted(self._background.items()):
            yield from _counters(component, asdict(stats))
        if self._snapshots is not None:
            yield from _counters("snapshots", asdict(self._snapshots.stats))
            yield _gauge(
                "snapshot_last_seq",
                "Number of the last metadata snapshot this agent wrote to the bucket (-1: none).",
                self._snapshots.last_seq,
            )
        yield from _org_counters(self._traffic)
        led = self._log.led_partitions()
        slots = sum(1 for tp in led if is_internal(tp.topic))
        yield _gauge(
            "partitions_led", "Partitions of topics whose lease this agent holds.", len(led) - slots
        )
        yield _gauge(
            "coordinator_slots_led",
            "Group coordinator slots whose lease this agent holds (it coordinates their groups).",
            slots,
        )
        yield _gauge(
            "flush_pending_bytes",
            "Bytes appended and not yet in a committed object.",
            self._log.flusher.pending_bytes,
        )
        gauges = self._gauges()
        yield _gauge(
            "kafka_connections", "Open Kafka client connections.", gauges.kafka_connections
        )
        yield _gauge(
            "transactions_open",
            "Open transactions this agent coordinates (Ongoing or being completed).",
            gauges.transactions_open,
        )
        yield _gauge(
            "transactions_completing",
            "Decided transactions whose markers are being written.",
            gauges.transactions_completing,
        )


def _counters(component: str, values: dict[str, int]) -> Iterator[Metric]:
    for name, value in values.items():
        yield CounterMetricFamily(
            f"{PREFIX}_{component}_{name}", f"{component} {name.replace('_', ' ')}", value=value
        )


ORG_COUNTERS = {
    "produced_bytes": "Bytes of record batches produced, by org.",
    "fetched_bytes": "Bytes of record batches fetched, by org.",
    "throttle_ms": "Milliseconds clients were throttled for going over a quota, by org.",
}


def _org_counters(traffic: Mapping[str, OrgTraffic]) -> Iterator[Metric]:
    for field, documentation in ORG_COUNTERS.items():
        family = CounterMetricFamily(f"{PREFIX}_org_{field}", documentation, labels=["org"])
        for org, counters in sorted(traffic.items()):
            family.add_metric([org], getattr(counters, field))
        yield family


def _gauge(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def agent_registry(
    log: LogStore,
    gauges: Callable[[], AgentGauges],
    kafka: ListenerStats,
    transactions: TransactionStats | None = None,
    reconciler: Reconciler | None = None,
    snapshots: SnapshotWriter | None = None,
    background: Mapping[str, BackgroundStats] | None = None,
    traffic: Mapping[str, OrgTraffic] | None = None,
) -> CollectorRegistry:
    """A registry holding only this agent's metrics (tests run several agents per process)."""
    registry = CollectorRegistry(auto_describe=True)
    collector = AgentCollector(
        log, gauges, kafka, transactions, reconciler, snapshots, background, traffic
    )
    registry.register(collector)
    return registry
