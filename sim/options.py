"""Swarm options: everything one simulated run depends on, drawn from its seed.

Cluster size, engine knobs (flush thresholds, lease TTL, WAL group settings),
fault rates of every simulated component, the buggify call sites, the
nemesis schedule of the safety phase and the workload mix and sizes. One
seed gives one `SimOptions`; `describe()` prints it first in a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sim.buggify import FIRE_RATE_MAX, draw_sites
from sim.cluster import ClusterOptions
from sim.disk import DiskFaults
from sim.metadata import MetadataFaults
from sim.network import NetworkFaults
from sim.object_store import ObjectStoreFaults
from sim.rng import SeededRng
from streamhouse.config import COMPACTION_OFF, KIB, MERGE_OFF, MIB, RECONCILE_OFF, Settings
from streamhouse.ports.buggify import CRASH_POINTS, MERGE_ANY_RUN, MERGE_SITES

P = TypeVar("P")

AGENTS_MAX = 3
# The metadata store's clock runs apart from every agent's: its wall time starts up to an
# hour away and drifts up to 5% (as fast as the agents' drift nemesis), so nothing that
# compares an agent's clock with the store's can pass (Settings.lease_drift_margin_ms is
# sized for this drift).
STORE_CLOCK_OFFSETS_MS = (-3_600_000, -1_000, 0, 1_000, 3_600_000)
STORE_CLOCK_DRIFT_PPM_MAX = 50_000
# Settings renamed since reproductions were recorded: old name -> new name.
RENAMED_SETTINGS = {
    "default_partition_count": "num_partitions",
    "offset_metadata_bytes_max": "offset_metadata_max_bytes",
    "group_members_max": "group_max_size",
}
# Settings removed since: the static cluster directory (agents now register in the store);
# the one org every object was keyed under (an object now goes under its topic's org).
REMOVED_SETTINGS = frozenset({"node_id", "cluster_agents", "org"})

CRASH = "crash"  # crash, stay down a while, restart (sometimes with a wiped disk)
PAUSE = "pause"
PARTITION = "partition"  # a client host cut from an agent, healed after a while
CLOG = "clog"
CLOCK_STEP = "clock_step"
CLOCK_DRIFT = "clock_drift"
MEMBER_CRASH = "member_crash"  # a group member's process dies (no LeaveGroup)
NEMESIS_KINDS = (CRASH, PAUSE, PARTITION, CLOG, CLOCK_STEP, CLOCK_DRIFT, MEMBER_CRASH)
# the agent crashes the first time its engine reaches crash point CRASH_POINTS[amount] (a step
# of the rewrite-and-swap) after `at_ms`, while the safety phase lasts; down `duration_ms`
CRASH_AT = "crash_at"
# the metadata store refuses every call for a while, then a new primary serves with its clock
# stepped (`amount` ms); the cluster profile's own kind, so the default draws stay as they were
STORE_FAILOVER = "store_failover"

# Profiles: which options a seed draws. "default" is every sweep's; "cluster" redraws the
# cluster part of the default options: two or more agents, and a clock step, a pause past the
# lease and a store failover in every run (F6: membership, leases and ownership under the
# faults they exist for), with a few more nemeses of any kind.
DEFAULT_PROFILE = "default"
CLUSTER_PROFILE = "cluster"
# "txn" adds transactional clients (F8) to the default options: transactional producers,
# read_committed readers, sometimes a consume-transform-produce client, on 1 to 3 agents,
# with a crash and restart in every run (the transaction coordinator's agent, with one
# agent) and, with several, sometimes a pause past the lease (coordinator slots move), and
# sometimes a store failover (the coordinators' state is in the metadata store); a quarter
# of them get two more crashes, a pause, a store failover and a clock step on top.
TXN_PROFILE = "txn"
TXN_STORE_FAILOVER_RATE = 0.3
# a quarter of the txn seeds get more of everything on top
TXN_HARD_RATE = 0.25
TXN_HARD = (CRASH, CRASH, PAUSE, STORE_FAILOVER, CLOCK_STEP)
# "dr" (F9 disaster recovery) redraws the default options around a metadata wipe: every
# agent crashes, the metadata store is lost whole and the agents restart on a blank one
# (staggered, so sometimes together), rebuilding it from the bucket; snapshots are taken
# every DR_SNAPSHOT_INTERVALS_MS (0: none, the footers alone tell). Sometimes a second wipe,
# and a few nemeses of other kinds.
DR_PROFILE = "dr"
METADATA_WIPE = "metadata_wipe"
DR_SNAPSHOT_INTERVALS_MS = (0, 100, 500, 2_000)
DR_SECOND_WIPE_RATE = 0.3
DR_EXTRA_NEMESES_MAX = 2
DR_WIPE_DOWN_MS_MAX = 3_000
# between one agent's restart and the next one's after a wipe: 0 starts them together
DR_RESTART_STAGGERS_MS = (0, 0, 5, 50, 1_000)
# The reconciler: its grace (an orphan younger than it is kept) and how often one agent runs
# it in the background (RECONCILE_OFF: never; the run's end always runs it once more).
DR_RECONCILE_GRACES_MS = (2_000, 10_000, 30_000)
DR_RECONCILE_INTERVALS_MS = (RECONCILE_OFF, 500, 3_000)
# junk objects shaped like ours planted in the bucket, each young or older than the grace
PLANT_ORPHAN = "plant_orphan"
DR_ORPHANS_MAX = 3
# an object segment rows name deleted (amount 0) or corrupted (1) when the cluster heals (after
# every wipe: a rebuild stops at the gap it leaves), picked by `duration_ms` (a selector, not
# a duration) among those named then
DAMAGE_OBJECT = "damage_object"
DR_DAMAGE_RATE = 0.5
PROFILES = (DEFAULT_PROFILE, CLUSTER_PROFILE, TXN_PROFILE, DR_PROFILE)
# The object merger (engine/merger.py), drawn in every profile from a fork of its own (the
# draws before it stay as they were): in some seeds it is off, in the others it merges often
# (a short interval, tiny thresholds) beside the flushes, reads and lease moves; its buggify
# sites are drawn apart from the others. Runs recorded before it existed keep it off. A
# merging seed sometimes reconciles in the background with a grace the run outlives, so
# the objects merges replaced are deleted while clients read (longer than any stall of the
# run: a pause lasts up to two lease TTLs, a store failover as long)
MERGE_RATE = 0.6
MERGE_INTERVALS_MS = (50, 200, 1_000)
MERGE_SMALL_BLOCKS_BYTES = (256, 4 * KIB, 1 * MIB)
MERGE_TARGETS_BYTES = (1 * KIB, 16 * KIB, 16 * MIB)
MERGE_RUN_ROWS_MIN = (2, 3, 8)
MERGE_BLOCKS_BYTES_MAX = (200, 4 * KIB, 4 * MIB)
MERGE_CYCLE_BYTES_MAX = (1 * KIB, 256 * MIB)
MERGE_RATES_BYTES_PER_S = (16 * KIB, 32 * MIB)
MERGE_RECONCILE_GRACES_MS = (30_000, Settings.reconcile_grace_ms)
MERGE_RECONCILE_INTERVAL_MS = 1_000
# A compacted workload topic, drawn in the default and cluster profiles from a fork of its
# own: keys repeat (records of one key supersede each other), and every agent cleans the
# partitions it leads every few hundred ms (as soon as anything is dirty, or half is)
COMPACTED_RATE = 0.35
COMPACTED_KEYS = (2, 5, 20)
COMPACTED_DIRTY_RATIOS = ("0", "0.5")
COMPACTION_INTERVALS_MS = (50, 300, 1_000)
# Drawn in every profile from forks of their own, for seeds whose agents rewrite (merge or
# compact): the crash-at-step nemeses (1 or 2, armed in the safety phase's first half); for
# compacting seeds without the merger, the rewrite step's buggify sites; a compaction round's
# run bound (small ones make rounds of several swaps); and sometimes a reconcile grace the run
# outlives, so released objects are deleted while clients read: longer than any stall of the
# run (a pause lasts up to two lease TTLs, a store failover as long), by a margin
CRASH_AT_NEMESES_MAX = 2
CRASH_AT_DOWN_MS_MAX = 3_000
REWRITE_SITES = tuple(site for site in MERGE_SITES if site != MERGE_ANY_RUN)
COMPACTION_RUN_ROWS = (1, 2, 3, Settings.compaction_run_rows_max)
SHORT_GRACE_RATE = 0.7
SHORT_GRACE_STALL_TTLS = 2
SHORT_GRACE_MARGINS_MS = (1_000, 3_000)
CLUSTER_AGENTS_MIN = 2
CLUSTER_EXTRA_NEMESES_MAX = 2
# A promoted replica's clock is within NTP error of the old primary's; a forward step
# shortens every lease by as much, so it stays well inside Settings.lease_drift_margin_ms.
STORE_FAILOVER_CLOCK_STEPS_MS = (-1_000, -100, 0, 100, 250)


@dataclass(frozen=True)
class Nemesis:
    """One fault of the safety phase: what, when (ms after it starts), for how long, on whom."""

    kind: str
    at_ms: int
    duration_ms: int
    agent: int  # 1-based
    # clock step in ms, drift in ppm, wipe (1) or not (0) for a crash, restart stagger in ms
    # for a metadata wipe
    amount: int = 0


@dataclass(frozen=True)
class WorkloadOptions:
    """The clients of a run."""

    topic: str = "sim"
    partitions: int = 2
    # (acks, idempotent) per producer; acks is Kafka's 1 or -1
    producers: tuple[tuple[int, bool], ...] = ((1, False), (-1, False), (-1, True))
    records_per_producer: int = 20
    send_interval_ms: int = 50
    group_members: int = 2
    member_polls: int = 20
    liveness_records: int = 3
    # A compacted topic (cleanup.policy=compact): every record keyed by one of `keys` keys,
    # cleaned with these configs while the clients run
    compacted: bool = False
    keys: int = 0
    min_cleanable_dirty_ratio: str = "0.5"

    def topic_configs(self) -> dict[str, str]:
        """The workload topic's configs."""
        if not self.compacted:
            return {}
        return {
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": self.min_cleanable_dirty_ratio,
        }


@dataclass(frozen=True)
class TxnOptions:
    """The transactional clients of a run (the txn profile; `sim.txn_workload`)."""

    producers: int = 2
    txns_per_producer: int = 6
    records_per_txn_max: int = 4
    txn_interval_ms: int = 100  # between one transaction's end and the next one's start
    abort_rate: float = 0.3
    readers: int = 1  # read_committed readers of the topic during the safety phase
    reader_polls: int = 20
    transformers: int = 0  # consume-transform-produce clients (0 or 1: one group)
    transformer_polls: int = 20
    timeout_ms: int = 10_000  # transaction.timeout.ms: a hanging one is aborted after it
    output_topic: str = "sim-out"
    group: str = "sim-ctp"


@dataclass(frozen=True)
class SimOptions:
    seed: int
    cluster: ClusterOptions
    network_faults: NetworkFaults
    workload: WorkloadOptions
    nemeses: tuple[Nemesis, ...]
    safety_ms: int
    liveness_bound_ms: int
    profile: str = DEFAULT_PROFILE
    txn: TxnOptions | None = None

    def describe(self) -> str:
        """Every option on one line: what `python -m sim run` prints first."""
        settings = self.cluster.settings
        knobs = {
            name: getattr(settings, name)
            for name in (
                "flush_interval_ms",
                "flush_bytes_max",
                "lease_ttl_ms",
                "wal_group_wait_ms",
                "wal_groups_in_flight_max",
                "wal_group_bytes_max",
            )
        }
        if settings.merge_interval_ms > MERGE_OFF:
            for name in (
                "merge_interval_ms",
                "merge_small_block_bytes",
                "merge_target_bytes",
                "merge_run_rows_min",
                "merge_block_bytes_max",
                "merge_cycle_bytes_max",
                "merge_bytes_per_s_max",
                "reconcile_grace_ms",
                "reconcile_interval_ms",
            ):
                knobs[name] = getattr(settings, name)
        if settings.compaction_interval_ms > COMPACTION_OFF:
            knobs["compaction_interval_ms"] = settings.compaction_interval_ms
            # older runs: the defaults, not shown
            if settings.compaction_run_rows_max != Settings.compaction_run_rows_max:
                knobs["compaction_run_rows_max"] = settings.compaction_run_rows_max
            if settings.merge_interval_ms <= MERGE_OFF and (
                settings.reconcile_grace_ms != Settings.reconcile_grace_ms
            ):
                knobs["reconcile_grace_ms"] = settings.reconcile_grace_ms
                knobs["reconcile_interval_ms"] = settings.reconcile_interval_ms
        if self.profile == DR_PROFILE:  # older runs and other profiles: the default
            knobs["snapshot_interval_ms"] = settings.snapshot_interval_ms
            if drew_reconcile(settings):
                knobs["reconcile_grace_ms"] = settings.reconcile_grace_ms
                knobs["reconcile_interval_ms"] = settings.reconcile_interval_ms
        parts = [
            f"seed={self.seed}",
            f"agents={self.cluster.agents}",
            f"safety_ms={self.safety_ms}",
            f"liveness_bound_ms={self.liveness_bound_ms}",
            f"knobs={knobs}",
            f"buggify={list(self.cluster.buggify_sites)}@{self.cluster.buggify_rate:.3f}",
            f"network={_short(self.network_faults)}",
            f"disk={_short(self.cluster.disk_faults)}",
            f"objects={_short(self.cluster.object_faults)}",
            f"metadata={_short(self.cluster.metadata_faults)}",
            f"workload={_short(self.workload, _uncompacted_fields(self.workload))}",
            "nemeses=[" + ", ".join(_nemesis(n) for n in self.nemeses) + "]",
        ]
        if self.txn is not None:  # older runs: none
            parts.insert(-1, f"txn={_short(self.txn)}")
        cluster = self.cluster
        if cluster.store_clock_offset_ms or cluster.store_clock_drift_ppm:  # older runs: none
            offset_ms, drift_ppm = cluster.store_clock_offset_ms, cluster.store_clock_drift_ppm
            parts.insert(-2, f"store_clock=({offset_ms:+}ms,{drift_ppm:+}ppm)")
        if self.profile != DEFAULT_PROFILE:  # older runs: the default, unnamed
            parts.insert(1, f"profile={self.profile}")
        return " ".join(parts)


def _short(value: object, left_out: frozenset[str] = frozenset()) -> str:
    fields = dataclasses.asdict(value)  # type: ignore[call-overload]
    return "(" + ",".join(f"{k}={v}" for k, v in fields.items() if k not in left_out) + ")"


COMPACTED_FIELDS = frozenset({"compacted", "keys", "min_cleanable_dirty_ratio"})


def _uncompacted_fields(workload: WorkloadOptions) -> frozenset[str]:
    """A workload without a compacted topic is described as before there were any (a
    recorded run's options must read the same)."""
    return frozenset() if workload.compacted else COMPACTED_FIELDS


def _nemesis(n: Nemesis) -> str:
    return f"{n.kind}@{n.at_ms}+{n.duration_ms}:agent-{n.agent}:{n.amount}"


def draw_common_options(seed: int) -> SimOptions:
    """The draws every profile without a compacted topic starts from (txn, dr): the defaults
    and what agents that rewrite add (the default and cluster profiles draw a compacted
    topic first, which the rewrite draws then see)."""
    return _rewriting(_draw_default(seed), SeededRng(seed).fork("rewrite"))


def draw_options(seed: int, profile: str = DEFAULT_PROFILE) -> SimOptions:
    """The options of `seed` under `profile`; the same seed always gives the same options."""
    assert profile in PROFILES, f"unknown profile {profile!r}"
    options = _draw_default(seed)
    if profile in (DEFAULT_PROFILE, CLUSTER_PROFILE):  # the txn clients write keyless records
        options = _compacting(options, SeededRng(seed).fork("compaction"))
    options = _rewriting(options, SeededRng(seed).fork("rewrite"))
    if profile == CLUSTER_PROFILE:
        options = _clustered(options, SeededRng(seed).fork("cluster-profile"))
    elif profile == TXN_PROFILE:
        options = _transactional(options, SeededRng(seed).fork("txn-profile"))
    elif profile == DR_PROFILE:  # it draws a reconcile grace of its own
        options = _disastrous(options, SeededRng(seed).fork("dr-profile"))
    return _crashing_at_steps(options, SeededRng(seed).fork("crash-points"))


def _rewrites(settings: Settings) -> bool:
    """Whether the agents rewrite objects (merge or compact)."""
    return (
        settings.merge_interval_ms > MERGE_OFF or settings.compaction_interval_ms > COMPACTION_OFF
    )


def _rewriting(options: SimOptions, rng: SeededRng) -> SimOptions:
    """For a seed whose agents rewrite: a compaction-only seed's rewrite buggify sites, a
    compaction round's run bound, and sometimes a reconcile grace the run outlives."""
    cluster = options.cluster
    settings = cluster.settings
    if not _rewrites(settings):
        return options
    if settings.merge_interval_ms <= MERGE_OFF:  # `_merging` drew none
        sites = draw_sites(rng.fork("buggify"), REWRITE_SITES)
        rate = rng.random() * FIRE_RATE_MAX
        if sites and not cluster.buggify_sites:
            cluster = dataclasses.replace(cluster, buggify_rate=rate)
        cluster = dataclasses.replace(
            cluster, buggify_sites=tuple(sorted((*cluster.buggify_sites, *sites)))
        )
    if settings.compaction_interval_ms > COMPACTION_OFF:
        settings = settings.with_overrides(compaction_run_rows_max=_pick(rng, COMPACTION_RUN_ROWS))
    if rng.chance(SHORT_GRACE_RATE):
        stall_ms = SHORT_GRACE_STALL_TTLS * settings.lease_ttl_ms
        settings = settings.with_overrides(
            reconcile_grace_ms=stall_ms + _pick(rng, SHORT_GRACE_MARGINS_MS),
            reconcile_interval_ms=MERGE_RECONCILE_INTERVAL_MS,
        )
    cluster = dataclasses.replace(cluster, settings=settings)
    return dataclasses.replace(options, cluster=cluster)


def _crashing_at_steps(options: SimOptions, rng: SeededRng) -> SimOptions:
    """For a seed whose agents rewrite, 1 or 2 crashes at steps of the rewrite-and-swap."""
    if not _rewrites(options.cluster.settings):
        return options
    drawn = [
        Nemesis(
            CRASH_AT,
            rng.randint(0, options.safety_ms // 2),
            rng.randint(0, CRASH_AT_DOWN_MS_MAX),
            rng.randint(1, options.cluster.agents),
            rng.randint(0, len(CRASH_POINTS) - 1),
        )
        for _ in range(rng.randint(1, CRASH_AT_NEMESES_MAX))
    ]
    nemeses = tuple(sorted((*options.nemeses, *drawn), key=lambda n: (n.at_ms, n.kind)))
    return dataclasses.replace(options, nemeses=nemeses)


def _disastrous(options: SimOptions, rng: SeededRng) -> SimOptions:
    """`options` with a metadata wipe (sometimes two) and snapshots every so often, or none."""
    settings = options.cluster.settings.with_overrides(
        snapshot_interval_ms=_pick(rng, DR_SNAPSHOT_INTERVALS_MS)
    )
    agents = options.cluster.agents
    lease_ttl_ms = settings.lease_ttl_ms
    safety_ms = options.safety_ms
    drawn = [_draw_wipe(rng, agents, safety_ms)]
    if rng.chance(DR_SECOND_WIPE_RATE):
        drawn.append(_draw_wipe(rng, agents, safety_ms))
    drawn += [
        _draw_nemesis(rng, _pick(rng, NEMESIS_KINDS), agents, safety_ms, lease_ttl_ms)
        for _ in range(rng.randint(0, DR_EXTRA_NEMESES_MAX))
    ]
    reconciling = rng.fork("reconcile")  # its own fork: the draws above stay as they were
    settings = settings.with_overrides(
        reconcile_grace_ms=_pick(reconciling, DR_RECONCILE_GRACES_MS),
        reconcile_interval_ms=_pick(reconciling, DR_RECONCILE_INTERVALS_MS),
    )
    for _ in range(reconciling.randint(0, DR_ORPHANS_MAX)):
        # amount: how old it looks when planted, in ms (0: new; else past the grace)
        old_ms = _pick(reconciling, (0, 2 * settings.reconcile_grace_ms))
        at_ms = reconciling.randint(0, safety_ms)
        drawn.append(Nemesis(PLANT_ORPHAN, at_ms, 0, 1, old_ms))
    damaging = rng.fork("damage")  # its own fork too
    if damaging.chance(DR_DAMAGE_RATE):
        selector, corrupt = damaging.randint(1, 1_000), damaging.randint(0, 1)
        drawn.append(Nemesis(DAMAGE_OBJECT, safety_ms, selector, 1, corrupt))
    return dataclasses.replace(
        options,
        cluster=dataclasses.replace(options.cluster, settings=settings),
        nemeses=tuple(sorted(drawn, key=lambda n: (n.at_ms, n.kind))),
        profile=DR_PROFILE,
    )


def drew_reconcile(settings: Settings) -> bool:
    """Whether the dr options drew the reconciler's settings (runs recorded before they did
    keep its defaults: an hour's grace, which their end does not wait out)."""
    return settings.reconcile_grace_ms in DR_RECONCILE_GRACES_MS


def _draw_wipe(rng: SeededRng, agents: int, safety_ms: int) -> Nemesis:
    """A metadata wipe in the safety phase (after its first quarter, so something was
    written): every agent down for a while, then restarted from `agent` on, `amount` ms
    apart."""
    at_ms = rng.randint(safety_ms // 4, safety_ms)
    down_ms = rng.randint(0, DR_WIPE_DOWN_MS_MAX)
    stagger_ms = _pick(rng, DR_RESTART_STAGGERS_MS)
    return Nemesis(METADATA_WIPE, at_ms, down_ms, rng.randint(1, agents), stagger_ms)


def _transactional(options: SimOptions, rng: SeededRng) -> SimOptions:
    """`options` with transactional clients, 1 to 3 agents and a crash and restart at least
    (with several agents, sometimes a pause past the lease too)."""
    agents = rng.randint(1, AGENTS_MAX)
    txn = TxnOptions(
        producers=rng.randint(1, 3),
        txns_per_producer=rng.randint(3, 8),
        records_per_txn_max=rng.randint(1, 5),
        txn_interval_ms=_pick(rng, (10, 100, 300)),
        abort_rate=_pick(rng, (0.0, 0.2, 0.5)),
        readers=rng.randint(0, 2),
        reader_polls=rng.randint(5, 20),
        transformers=int(rng.chance(0.5)),
        transformer_polls=rng.randint(5, 20),
        timeout_ms=_pick(rng, (5_000, 10_000, 20_000)),
    )
    lease_ttl_ms = options.cluster.settings.lease_ttl_ms
    safety_ms = options.safety_ms + txn.txns_per_producer * txn.txn_interval_ms
    kinds = [CRASH]
    if agents > 1 and rng.chance(0.5):
        kinds.append(PAUSE)
    kinds += [_pick(rng, NEMESIS_KINDS) for _ in range(rng.randint(0, 2))]
    drawn = [_draw_nemesis(rng, kind, agents, safety_ms, lease_ttl_ms) for kind in kinds]
    if rng.chance(TXN_STORE_FAILOVER_RATE):  # the coordinators' state is in the store
        drawn.append(_draw_nemesis(rng, STORE_FAILOVER, agents, safety_ms, lease_ttl_ms))
    if rng.chance(TXN_HARD_RATE):
        drawn += [_draw_nemesis(rng, kind, agents, safety_ms, lease_ttl_ms) for kind in TXN_HARD]
    return dataclasses.replace(
        options,
        cluster=dataclasses.replace(options.cluster, agents=agents),
        nemeses=tuple(sorted(drawn, key=lambda n: (n.at_ms, n.kind))),
        safety_ms=safety_ms,
        profile=TXN_PROFILE,
        txn=txn,
    )


def _clustered(options: SimOptions, rng: SeededRng) -> SimOptions:
    """`options` with 2+ agents and a clock step, a pause and a store failover at least."""
    agents = rng.randint(CLUSTER_AGENTS_MIN, AGENTS_MAX)
    lease_ttl_ms = options.cluster.settings.lease_ttl_ms
    kinds = [CLOCK_STEP, PAUSE, STORE_FAILOVER]
    kinds += [
        _pick(rng, (*NEMESIS_KINDS, STORE_FAILOVER))
        for _ in range(rng.randint(0, CLUSTER_EXTRA_NEMESES_MAX))
    ]
    drawn = [_draw_nemesis(rng, kind, agents, options.safety_ms, lease_ttl_ms) for kind in kinds]
    return dataclasses.replace(
        options,
        cluster=dataclasses.replace(options.cluster, agents=agents),
        nemeses=tuple(sorted(drawn, key=lambda n: (n.at_ms, n.kind))),
        profile=CLUSTER_PROFILE,
    )


def _draw_default(seed: int) -> SimOptions:
    rng = SeededRng(seed).fork("options")
    agents = rng.randint(1, AGENTS_MAX)
    lease_ttl_ms = _pick(rng, (2_000, 5_000, 10_000))
    settings = Settings(
        flush_interval_ms=_pick(rng, (5, 50, 200, 500)),
        flush_bytes_max=_pick(rng, (512, 16 * KIB, 8 * MIB)),
        lease_ttl_ms=lease_ttl_ms,
        wal_group_wait_ms=_pick(rng, (0, 0, 1, 5)),
        wal_groups_in_flight_max=rng.randint(1, 3),
        wal_group_bytes_max=_pick(rng, (4 * KIB, 4 * MIB)),
        group_initial_rebalance_delay_ms=_pick(rng, (0, 500, 3_000)),
        auto_create_topics=False,
        compaction_interval_ms=COMPACTION_OFF,  # the workloads write no compacted topic yet
    )
    faulty = rng.chance(0.8)  # a fifth of the seeds run fault-free, as a baseline
    network = NetworkFaults(
        delay_ms_min=0,
        delay_ms_max=_pick(rng, (0, 5, 40)),
        reset_rate=_rate(rng, faulty, 0.02),
        split_rate=_rate(rng, True, 0.3),
        clog_rate=_rate(rng, faulty, 0.01),
        clog_ms_max=2_000,
    )
    disk = DiskFaults(
        fsync_error_rate=_rate(rng, faulty and rng.chance(0.3), 0.02),
        torn_tail_rate=_pick(rng, (0.0, 0.3, 1.0)),
    )
    objects = ObjectStoreFaults(
        latency_ms_max=_pick(rng, (0, 20, 200)),
        list_latency_ms_max=_pick(rng, (0, 500)),
        unavailable_rate=_rate(rng, faulty, 0.1),
        put_unknown_outcome_rate=_rate(rng, faulty, 0.05),
    )
    metadata = MetadataFaults(
        unavailable_rate=_rate(rng, faulty, 0.05),
        unknown_outcome_rate=_rate(rng, faulty, 0.02),
    )
    buggify_sites = draw_sites(rng.fork("buggify"))
    cluster = ClusterOptions(
        agents,
        settings,
        disk,
        objects,
        metadata,
        buggify_sites,
        rng.random() * FIRE_RATE_MAX if buggify_sites else 0.0,
        *_draw_store_clock(SeededRng(seed).fork("store-clock")),
    )
    cluster = _merging(cluster, SeededRng(seed).fork("merger"))
    workload = _draw_workload(rng.fork("workload"))
    safety_ms = workload.records_per_producer * workload.send_interval_ms + 2_000
    nemeses = _draw_nemeses(rng.fork("nemesis"), faulty, agents, safety_ms, lease_ttl_ms)
    return SimOptions(seed, cluster, network, workload, nemeses, safety_ms, 60_000)


def _compacting(options: SimOptions, rng: SeededRng) -> SimOptions:
    """`options` as they are, or with a compacted workload topic whose keys repeat and the
    agents cleaning it often (its own fork: the draws before it stay as they were)."""
    if not rng.chance(COMPACTED_RATE):
        return options
    workload = dataclasses.replace(
        options.workload,
        compacted=True,
        keys=_pick(rng, COMPACTED_KEYS),
        min_cleanable_dirty_ratio=_pick(rng, COMPACTED_DIRTY_RATIOS),
    )
    settings = options.cluster.settings.with_overrides(
        compaction_interval_ms=_pick(rng, COMPACTION_INTERVALS_MS)
    )
    cluster = dataclasses.replace(options.cluster, settings=settings)
    return dataclasses.replace(options, cluster=cluster, workload=workload)


def _merging(cluster: ClusterOptions, rng: SeededRng) -> ClusterOptions:
    """`cluster` with the merger off, or merging often with its buggify sites drawn."""
    if not rng.chance(MERGE_RATE):
        return dataclasses.replace(
            cluster, settings=cluster.settings.with_overrides(merge_interval_ms=MERGE_OFF)
        )
    grace_ms = _pick(rng, MERGE_RECONCILE_GRACES_MS)
    settings = cluster.settings.with_overrides(
        merge_interval_ms=_pick(rng, MERGE_INTERVALS_MS),
        merge_small_block_bytes=_pick(rng, MERGE_SMALL_BLOCKS_BYTES),
        merge_target_bytes=_pick(rng, MERGE_TARGETS_BYTES),
        merge_run_rows_min=_pick(rng, MERGE_RUN_ROWS_MIN),
        merge_block_bytes_max=_pick(rng, MERGE_BLOCKS_BYTES_MAX),
        merge_cycle_bytes_max=_pick(rng, MERGE_CYCLE_BYTES_MAX),
        merge_bytes_per_s_max=_pick(rng, MERGE_RATES_BYTES_PER_S),
        reconcile_grace_ms=grace_ms,
        reconcile_interval_ms=(
            cluster.settings.reconcile_interval_ms
            if grace_ms == Settings.reconcile_grace_ms
            else MERGE_RECONCILE_INTERVAL_MS
        ),
    )
    sites = draw_sites(rng.fork("buggify"), MERGE_SITES)
    rate = rng.random() * FIRE_RATE_MAX
    if sites and not cluster.buggify_sites:
        cluster = dataclasses.replace(cluster, buggify_rate=rate)
    return dataclasses.replace(
        cluster,
        settings=settings,
        buggify_sites=tuple(sorted((*cluster.buggify_sites, *sites))),
    )


def _draw_store_clock(rng: SeededRng) -> tuple[int, int]:
    """(offset ms, drift ppm) of the metadata store's clock; its own fork, so the draws
    before it stay as they were."""
    offset_ms = _pick(rng, STORE_CLOCK_OFFSETS_MS)
    return offset_ms, rng.randint(-STORE_CLOCK_DRIFT_PPM_MAX, STORE_CLOCK_DRIFT_PPM_MAX)


def _draw_workload(rng: SeededRng) -> WorkloadOptions:
    producers: list[tuple[int, bool]] = [(1, False), (-1, False), (-1, True)]
    producers = [p for p in producers if rng.chance(0.75)] or [(-1, True)]
    return WorkloadOptions(
        partitions=rng.randint(1, 3),
        producers=tuple(producers),
        records_per_producer=rng.randint(5, 25),
        send_interval_ms=_pick(rng, (10, 50, 200)),
        group_members=_pick(rng, (0, 1, 2, 3)),
        member_polls=rng.randint(5, 20),
    )


def _draw_nemeses(
    rng: SeededRng, faulty: bool, agents: int, safety_ms: int, lease_ttl_ms: int
) -> tuple[Nemesis, ...]:
    if not faulty:
        return ()
    drawn = []
    for _ in range(rng.randint(0, 4)):
        kind = _pick(rng, NEMESIS_KINDS)
        drawn.append(_draw_nemesis(rng, kind, agents, safety_ms, lease_ttl_ms))
    return tuple(sorted(drawn, key=lambda n: (n.at_ms, n.kind)))


def _draw_nemesis(
    rng: SeededRng, kind: str, agents: int, safety_ms: int, lease_ttl_ms: int
) -> Nemesis:
    at_ms = rng.randint(0, safety_ms)
    agent = rng.randint(1, agents)
    if kind == CRASH:
        return Nemesis(kind, at_ms, rng.randint(0, 3_000), agent, int(rng.chance(0.1)))
    if kind == PAUSE:
        return Nemesis(kind, at_ms, rng.randint(100, 2 * lease_ttl_ms), agent)
    if kind in (PARTITION, CLOG):
        return Nemesis(kind, at_ms, rng.randint(100, 8_000), agent)
    if kind == CLOCK_STEP:
        step_ms = _pick(rng, (-60_000, -1_000, 1_000, 2 * lease_ttl_ms, 3_600_000))
        return Nemesis(kind, at_ms, 0, agent, step_ms)
    if kind == CLOCK_DRIFT:
        return Nemesis(kind, at_ms, 0, agent, rng.randint(-50_000, 50_000))
    if kind == STORE_FAILOVER:
        step_ms = _pick(rng, STORE_FAILOVER_CLOCK_STEPS_MS)
        return Nemesis(kind, at_ms, rng.randint(100, 2 * lease_ttl_ms), agent, step_ms)
    return Nemesis(kind, at_ms, 0, agent)


def _pick(rng: SeededRng, choices: Sequence[P]) -> P:
    return choices[rng.randint(0, len(choices) - 1)]


def _rate(rng: SeededRng, on: bool, rate_max: float) -> float:
    """A rate up to `rate_max` when `on` (drawn either way, so later draws do not shift)."""
    drawn = rng.random() * rate_max
    return drawn if on else 0.0


def options_to_json(options: SimOptions) -> dict[str, Any]:
    """Every option as plain JSON values (a reproduction keeps them: the seed alone means
    something else once the drawing changes)."""
    return dataclasses.asdict(options)


def options_from_json(raw: dict[str, Any]) -> SimOptions:
    cluster = raw["cluster"]
    workload = dict(raw["workload"])
    workload["producers"] = tuple((int(acks), bool(idem)) for acks, idem in workload["producers"])
    return SimOptions(
        seed=int(raw["seed"]),
        cluster=ClusterOptions(
            agents=int(cluster["agents"]),
            settings=Settings(
                **{
                    "merge_interval_ms": MERGE_OFF,  # recorded before the merger existed
                    "compaction_interval_ms": COMPACTION_OFF,  # and before compaction
                    **{
                        RENAMED_SETTINGS.get(k, k): v
                        for k, v in cluster["settings"].items()
                        if k not in REMOVED_SETTINGS
                    },
                }
            ),
            disk_faults=DiskFaults(**cluster["disk_faults"]),
            object_faults=ObjectStoreFaults(**cluster["object_faults"]),
            metadata_faults=MetadataFaults(**cluster["metadata_faults"]),
            buggify_sites=tuple(cluster["buggify_sites"]),
            buggify_rate=float(cluster["buggify_rate"]),
            store_clock_offset_ms=int(cluster.get("store_clock_offset_ms", 0)),
            store_clock_drift_ppm=int(cluster.get("store_clock_drift_ppm", 0)),
        ),
        network_faults=NetworkFaults(**raw["network_faults"]),
        workload=WorkloadOptions(**workload),
        nemeses=tuple(Nemesis(**nemesis) for nemesis in raw["nemeses"]),
        safety_ms=int(raw["safety_ms"]),
        liveness_bound_ms=int(raw["liveness_bound_ms"]),
        profile=str(raw.get("profile", DEFAULT_PROFILE)),
        txn=None if raw.get("txn") is None else TxnOptions(**raw["txn"]),
    )
