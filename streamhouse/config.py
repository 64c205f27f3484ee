"""One frozen settings object for an agent; every bound is named here, units last."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

KIB = 1024
MIB = 1024 * KIB
HTTP_DISABLED = -1
RECONCILE_OFF = 0  # reconcile_interval_ms: no background reconciler on this agent
MERGE_OFF = 0  # merge_interval_ms at or below it: no object merger on this agent
COMPACTION_OFF = 0  # compaction_interval_ms at or below it: no log compaction on this agent
RETENTION_OFF = (0, -1)  # retention_check_interval_ms: no retention on this agent
PORT_MAX = 65_535
EVENT_LOOPS = ("uvloop", "asyncio")
# Kafka's security.protocol values for a listener; SASL_* authenticate, *SSL encrypt (TLS)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SASL_SSL", "SSL")
AUTH_REQUIRED = "required"
AUTH_MODES = ("none", AUTH_REQUIRED)
SASL_MECHANISMS_KNOWN = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")  # kafka/sasl.py's
WAL_ENTRY_OVERHEAD_BYTES_MAX = 512  # frame (9) + topic (2 + up to 249) + partition and epoch (8)


@dataclass(frozen=True)
class Settings:
    """Every tunable of an agent. Defaults are the embedded, single-agent setup."""

    data_dir: str = "./data"
    metadata_url: str = ""  # empty: sqlite file under data_dir
    object_store_url: str = ""  # empty: local directory under data_dir
    storage: str = "real"  # "null": discard every write (benchmark baseline only)
    # "uvloop": libuv's event loop, a third less CPU per small request than asyncio's own;
    # "asyncio": the standard library's (the simulator runs the engine on a loop of its own)
    event_loop: str = "uvloop"
    agent_id: str = ""  # empty: generated once and kept in data_dir
    # Agent processes on this host, one cluster sharing the metadata store and the bucket
    # (streamhouse/supervisor.py); 0: one per core (CPU affinity). Process i listens for Kafka on
    # kafka_port + i and keeps its WAL in its own directory (io/locations.py)
    processes: int = 0
    process_index: int = 0  # which of them this is: set by the supervisor, not by users

    # Kafka listener
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092  # 0: any free port (tests)
    advertised_host: str = ""  # empty: kafka_host, or this machine's IPv4 when bound to 0.0.0.0
    # The port clients are told to connect to (Kafka's advertised.listeners port): a proxy or
    # NAT in front of the agent; 0: the port the listener bound
    advertised_port: int = 0
    auto_create_topics: bool = True  # Kafka's auto.create.topics.enable (on Metadata requests)
    frame_bytes_max: int = 100 * MIB
    # Requests read from one connection and not yet answered, by count and by their frames'
    # bytes; reading pauses past either (server/in_flight.py). Generous in count, so a
    # producer that pipelines small requests gets all of them into one flush window
    # (acks=all waits up to flush_interval_ms); bounded in bytes, which is what costs memory
    requests_in_flight_max: int = 10_000
    request_bytes_in_flight_max: int = 64 * MIB
    # Kafka's max.connections: one more is closed at once. Kafka leaves it unbounded by
    # default; 10 000 is far above what clients of one agent open (one connection per
    # client and broker, one more to the coordinator) and bounds the memory and file
    # descriptors a connection flood can take (the fd limit must allow it: ulimit -n)
    connections_max: int = 10_000
    # Security of the Kafka listener (one of SECURITY_PROTOCOLS; PLAINTEXT: open, as before).
    # SASL_*: a client must authenticate (SaslHandshake v1, SaslAuthenticate) with one of
    # sasl_mechanisms (comma-separated) before any other request. *SSL: TLS with this PEM
    # certificate chain and key. sasl_session_lifetime_ms: an authenticated connection must
    # re-authenticate (KIP-368) within it, or is closed; 0: never required
    kafka_security_protocol: str = "PLAINTEXT"
    sasl_mechanisms: str = ",".join(SASL_MECHANISMS_KNOWN)
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    sasl_session_lifetime_ms: int = 0
    # "required": every door wants an API key (Kafka: SASL; the HTTP API: Basic), and the first
    # start with no key writes an admin key to <data_dir>/admin-credentials.json; "none": open
    auth: str = "none"

    # HTTP (health, readiness, metrics)
    http_host: str = "127.0.0.1"
    http_port: int = 8080  # 0: any free port (tests); HTTP_DISABLED: no HTTP listener

    # the schema registry's REST door (Confluent's API and default port)
    schema_registry_host: str = "127.0.0.1"
    schema_registry_port: int = 8081  # 0: any free port (tests); HTTP_DISABLED: off

    # the REST proxy door (Confluent REST Proxy's API v2 and v3, and its default port)
    rest_proxy_host: str = "127.0.0.1"
    rest_proxy_port: int = 8082  # 0: any free port (tests); HTTP_DISABLED: off

    # the gRPC door (streamhouse.v1 Records and Admin, health, reflection)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051  # 0: any free port (tests); HTTP_DISABLED: off

    # WAL
    wal_segment_bytes_max: int = 64 * MIB
    wal_group_bytes_max: int = 4 * MIB
    wal_group_wait_ms: int = 0  # extra wait to grow a group; appends queue up during fsync anyway
    wal_queue_bytes_max: int = 64 * MIB
    wal_groups_in_flight_max: int = 2  # the disk writes the next group while one syncs
    wal_entry_bytes_max: int = 16 * MIB
    wal_disk_reserve_bytes: int = 64 * MIB

    # Flush to the object store
    flush_interval_ms: int = 200
    flush_bytes_max: int = 8 * MIB
    flush_pending_bytes_max: int = 256 * MIB
    flush_retry_backoff_ms_max: int = 5_000
    zstd_level: int = 3

    # Cluster membership: agents sharing the metadata store and bucket register there
    # (engine/membership.py) and heartbeat; one whose heartbeat is older than the session
    # timeout (in the store's time) is gone from Metadata. Kafka's broker.heartbeat.interval.ms
    # and broker.session.timeout.ms
    agent_heartbeat_interval_ms: int = 2_000
    agent_session_timeout_ms: int = 9_000
    # How often each agent balances ownership (engine/ownership.py): reads the live agents
    # and every partition, takes what is placed on it and hands over its surplus
    ownership_interval_ms: int = 1_000

    # Partitions and leases
    lease_ttl_ms: int = 10_000  # in the metadata store's time, which judges expiry
    # A lease holder leads until lease_ttl_ms - lease_drift_margin_ms of its own monotonic
    # time after sending the renewal (engine/leases.py), so the margin must cover
    # lease_ttl_ms * (store clock fast rate + holder's monotonic slow rate). NTP-disciplined
    # clocks stay within 500 ppm (0.05%); the simulator drifts the store's clock by up to
    # 5% (sim/options.py STORE_CLOCK_DRIFT_PPM_MAX). 1 s is 10% of the default TTL: that
    # 5% twice over, and 100 times what real clocks need
    lease_drift_margin_ms: int = 1_000
    # Read memory, one budget for the agent however many partitions it leads: recent batches
    # of every partition's in-memory tail together (durable ones evicted oldest first past
    # it; those awaiting their flush stay, bounded by flush_pending_bytes_max), and the
    # decompressed object blocks kept for readers behind the tail. With Python's own (about
    # 100 MiB) and the fetch responses in flight, an agent stays within 512 MiB
    tail_bytes_max: int = 128 * MIB
    block_cache_bytes_max: int = 64 * MIB
    # Kafka's broker fetch.max.bytes (55 MiB there): the records one Fetch response carries at
    # most, whatever the client asks (a partition's first batch still comes, as Kafka's):
    # bounds the memory a response in flight takes per connection
    fetch_bytes_max: int = 16 * MIB
    batch_bytes_max: int = 1 * MIB
    num_partitions: int = 1  # Kafka's num.partitions: auto-created topics, CreateTopics with -1
    # partitions of one topic; more is refused (INVALID_PARTITIONS): each one costs a lease,
    # a tail and a metadata row, and Metadata answers list every one of them
    topic_partitions_max: int = 10_000

    # Idempotent producers
    producers_per_partition_max: int = 10_000  # least recently appending forgotten beyond it
    producer_id_expiration_ms: int = 24 * 3600 * 1000  # Kafka's producer.id.expiration.ms

    # Consumer groups
    offset_metadata_max_bytes: int = 4096  # Kafka's offset.metadata.max.bytes
    group_initial_rebalance_delay_ms: int = 3000  # Kafka's group.initial.rebalance.delay.ms
    group_min_session_timeout_ms: int = 6000  # Kafka's group.min.session.timeout.ms
    group_max_session_timeout_ms: int = 1_800_000  # Kafka's group.max.session.timeout.ms
    group_max_size: int = 1000  # Kafka's group.max.size; beyond: GROUP_MAX_SIZE_REACHED
    groups_max: int = 10_000  # groups one agent coordinates; beyond: COORDINATOR_NOT_AVAILABLE
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000  # Kafka's offsets.retention.minutes
    offsets_retention_check_interval_ms: int = 600_000

    # Transactions (engine/transactions.py)
    transaction_max_timeout_ms: int = 900_000  # Kafka's transaction.max.timeout.ms
    # open transactions one agent coordinates (kept in memory, timed out from there);
    # beyond it a new one is refused with COORDINATOR_NOT_AVAILABLE
    transactions_per_coordinator_max: int = 10_000
    transaction_partitions_max: int = 10_000  # partitions of one transaction (INVALID_REQUEST)
    # how often timed-out transactions are aborted and newly taken coordinator slots
    # recovered (Kafka's transaction.abort.timed.out.transaction.cleanup.interval.ms is 10 s)
    transaction_check_interval_ms: int = 1_000
    # a transactional id not in a transaction for this long is forgotten (its next
    # InitProducerId starts it afresh); checked every transaction_expiry_check_interval_ms.
    # Kafka's transactional.id.expiration.ms and its cleanup interval
    transactional_id_expiration_ms: int = 7 * 24 * 3600 * 1000
    transaction_expiry_check_interval_ms: int = 3_600_000
    txn_marker_backoff_ms_max: int = 5_000  # a marker write is retried, doubling up to this
    # markers being written at once, all transactions together: each is one WriteTxnMarkers
    # to another agent, or this agent's own writes, for one transaction's partitions there
    txn_marker_writes_in_flight_max: int = 1_000
    txn_marker_request_timeout_ms: int = 10_000  # WriteTxnMarkers to another agent

    # The reconciler (engine/reconciler.py): deletes objects no segment row points into once
    # the younger of their upload and their row is older than the grace (an upload younger
    # than it may still be committed), and reports objects rows point into that are missing
    # or corrupt. One agent of the cluster runs it every interval (RECONCILE_OFF: never;
    # `streamctl admin reconcile` runs it by hand), reading bucket and rows this many a page
    reconcile_grace_ms: int = 3_600_000
    reconcile_interval_ms: int = 600_000
    reconcile_page_keys_max: int = 1_000

    # The object merger (engine/merger.py): every merge_interval_ms (MERGE_OFF or below:
    # never) each agent rewrites, in the partitions it leads, runs of consecutive segment rows
    # whose stored blocks are under merge_small_block_bytes into one object per run: a run
    # holds at most merge_target_bytes of stored blocks and is merged once it has
    # merge_run_rows_min rows or reaches that size; the new object's blocks hold at most
    # merge_block_bytes_max raw bytes (a reader caches blocks up to a quarter of
    # block_cache_bytes_max, so keep them well under it). Each cycle rewrites at most
    # merge_cycle_bytes_max raw bytes, at most merge_bytes_per_s_max a second. A run is
    # compressed in one go on the event loop: merge_target_bytes bounds that pause too
    merge_interval_ms: int = 60_000
    merge_small_block_bytes: int = 1 * MIB
    merge_target_bytes: int = 8 * MIB
    merge_run_rows_min: int = 16
    merge_block_bytes_max: int = 4 * MIB
    merge_cycle_bytes_max: int = 256 * MIB
    merge_bytes_per_s_max: int = 32 * MIB
    # Log compaction (engine/compactor.py): every compaction_interval_ms (Kafka's
    # log.cleaner.backoff.ms; COMPACTION_OFF or below: never) a cleaning round for each due
    # compacted partition this agent leads, rewriting at most compaction_bytes_per_s_max a
    # second; a round swaps its rows in runs of at most compaction_run_rows_max rows (one
    # metadata transaction each)
    compaction_interval_ms: int = 15_000
    compaction_bytes_per_s_max: int = 32 * MIB
    compaction_run_rows_max: int = 4_096
    # Retention (engine/retention.py): every interval each agent moves the log start of the
    # partitions it leads past the committed rows their topic's retention.ms and
    # retention.bytes let go (cleanup.policy with delete). Kafka's
    # log.retention.check.interval.ms; 0 or -1 (RETENTION_OFF): never
    retention_check_interval_ms: int = 300_000

    # Object store client (S3)
    s3_endpoint_url: str = ""  # empty: AWS; set for MinIO, moto, other S3-compatible stores
    s3_region: str = "us-east-1"
    s3_multipart_threshold_bytes: int = 16 * MIB
    s3_part_bytes: int = 8 * MIB
    s3_timeout_ms: int = 10_000

    # Disaster recovery: after committed flushes the metadata store is snapshotted to the
    # bucket, at most once per snapshot_interval_ms cluster-wide (0: never); the newest
    # snapshot_keep_count are kept. An agent started on a blank metadata store whose bucket
    # holds data rebuilds the store from the newest snapshot and later objects' footers.
    snapshot_interval_ms: int = 30_000
    snapshot_keep_count: int = 5
    rebuild_on_blank_metadata: bool = True
    s3_attempts_max: int = 5

    # SQL over topics (streamhouse/sql, POST /api/v1/sql): per query, the records its scans
    # may read (count, and bytes of keys, values and headers), the rows of its answer and its
    # time; the queries one agent runs at once; DuckDB's threads and memory per query
    sql_scan_rows_max: int = 1_000_000
    sql_scan_bytes_max: int = 256 * MIB
    sql_result_rows_max: int = 100_000
    sql_query_timeout_ms: int = 30_000
    sql_queries_in_flight_max: int = 4
    sql_threads: int = 2
    sql_memory_bytes_max: int = 512 * MIB

    def __post_init__(self) -> None:
        """Bounds that must hold together; a breach is a configuration error, said at start."""
        checks = {
            "batch_bytes_max must leave room for WAL framing under wal_entry_bytes_max": (
                self.batch_bytes_max + WAL_ENTRY_OVERHEAD_BYTES_MAX <= self.wal_entry_bytes_max
            ),
            "flush_bytes_max must not exceed flush_pending_bytes_max": (
                self.flush_bytes_max <= self.flush_pending_bytes_max
            ),
            "wal_group_bytes_max must not exceed wal_queue_bytes_max": (
                self.wal_group_bytes_max <= self.wal_queue_bytes_max
            ),
            "wal_groups_in_flight_max must be at least 1": self.wal_groups_in_flight_max >= 1,
            "connections_max must be at least 1": self.connections_max >= 1,
            "processes must not be negative (0: one per core)": self.processes >= 0,
            "kafka_port + processes - 1 must be a port (process i listens on kafka_port + i)": (
                self.kafka_port == 0 or 0 < self.kafka_port + max(self.processes, 1) - 1 <= PORT_MAX
            ),
            "advertised_port + processes - 1 must be a port (0: the Kafka port)": (
                self.advertised_port == 0
                or 0 < self.advertised_port + max(self.processes, 1) - 1 <= PORT_MAX
            ),
            "requests_in_flight_max and request_bytes_in_flight_max must be at least 1": (
                self.requests_in_flight_max >= 1 and self.request_bytes_in_flight_max >= 1
            ),
            "storage must be 'real' or 'null'": self.storage in ("real", "null"),
            "event_loop must be 'uvloop' or 'asyncio'": self.event_loop in EVENT_LOOPS,
            "num_partitions must be between 1 and topic_partitions_max": (
                1 <= self.num_partitions <= self.topic_partitions_max
            ),
            "agent_heartbeat_interval_ms must be positive and below agent_session_timeout_ms": (
                0 < self.agent_heartbeat_interval_ms < self.agent_session_timeout_ms
            ),
            "ownership_interval_ms must be positive": self.ownership_interval_ms > 0,
            "snapshot_interval_ms must not be negative and snapshot_keep_count must be at "
            "least 1": (self.snapshot_interval_ms >= 0 and self.snapshot_keep_count >= 1),
            "lease_ttl_ms must be at least 3 ms (renewed three times per TTL)": (
                self.lease_ttl_ms >= 3
            ),
            "lease_drift_margin_ms must leave a holder more than a renewal interval "
            "(lease_ttl_ms / 3) to lead": (
                self.lease_drift_margin_ms >= 0
                and 3 * (self.lease_ttl_ms - self.lease_drift_margin_ms) > self.lease_ttl_ms
            ),
            "flush_interval_ms and wal_group_wait_ms must not be negative": (
                self.flush_interval_ms >= 0 and self.wal_group_wait_ms >= 0
            ),
            "group_min_session_timeout_ms must not exceed group_max_session_timeout_ms": (
                0 <= self.group_min_session_timeout_ms <= self.group_max_session_timeout_ms
            ),
            "transaction_max_timeout_ms, transaction_check_interval_ms and the "
            "transaction bounds must be positive": (
                min(
                    self.transaction_max_timeout_ms,
                    self.transaction_check_interval_ms,
                    self.transactional_id_expiration_ms,
                    self.transaction_expiry_check_interval_ms,
                    self.transactions_per_coordinator_max,
                    self.transaction_partitions_max,
                    self.txn_marker_backoff_ms_max,
                    self.txn_marker_writes_in_flight_max,
                    self.txn_marker_request_timeout_ms,
                )
                > 0
            ),
            "reconcile_grace_ms and reconcile_interval_ms must not be negative (interval 0: "
            "off), reconcile_page_keys_max must be positive": (
                self.reconcile_grace_ms >= 0
                and self.reconcile_interval_ms >= 0
                and self.reconcile_page_keys_max > 0
            ),
            "merge_small_block_bytes, merge_target_bytes, merge_block_bytes_max, "
            "merge_cycle_bytes_max and merge_bytes_per_s_max must be positive, "
            "merge_run_rows_min at least 2": (
                min(
                    self.merge_small_block_bytes,
                    self.merge_target_bytes,
                    self.merge_block_bytes_max,
                    self.merge_cycle_bytes_max,
                    self.merge_bytes_per_s_max,
                )
                > 0
                and self.merge_run_rows_min >= 2
            ),
            "compaction_bytes_per_s_max must be positive": self.compaction_bytes_per_s_max > 0,
            "compaction_run_rows_max must be positive": self.compaction_run_rows_max > 0,
            "retention_check_interval_ms must be positive, or 0 or -1 (off)": (
                self.retention_check_interval_ms >= -1
            ),
            f"kafka_security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}": (
                self.kafka_security_protocol in SECURITY_PROTOCOLS
            ),
            f"sasl_mechanisms must be a non-empty list of {', '.join(SASL_MECHANISMS_KNOWN)}": (
                bool(self.sasl_mechanism_list)
                and set(self.sasl_mechanism_list) <= set(SASL_MECHANISMS_KNOWN)
            ),
            "SSL and SASL_SSL need ssl_certfile and ssl_keyfile (PEM)": (
                not self.kafka_tls or bool(self.ssl_certfile and self.ssl_keyfile)
            ),
            "auth must be none or required": self.auth in AUTH_MODES,
            "auth=required needs kafka_security_protocol SASL_PLAINTEXT or SASL_SSL": (
                self.auth != AUTH_REQUIRED or self.kafka_sasl
            ),
            "sasl_session_lifetime_ms must not be negative (0: no re-authentication)": (
                self.sasl_session_lifetime_ms >= 0
            ),
            "the sql_ bounds must be positive": (
                min(
                    self.sql_scan_rows_max,
                    self.sql_scan_bytes_max,
                    self.sql_result_rows_max,
                    self.sql_query_timeout_ms,
                    self.sql_queries_in_flight_max,
                    self.sql_threads,
                    self.sql_memory_bytes_max,
                )
                > 0
            ),
            "group_max_size and group_initial_rebalance_delay_ms must not be negative": (
                self.group_max_size >= 0 and self.group_initial_rebalance_delay_ms >= 0
            ),
        }
        broken = [rule for rule, holds in checks.items() if not holds]
        if broken:
            raise ValueError("invalid settings: " + "; ".join(broken))

    @property
    def auth_required(self) -> bool:
        """Clients must present an API key (a SASL listener asks for one, too)."""
        return self.auth == AUTH_REQUIRED or self.kafka_sasl

    @property
    def kafka_sasl(self) -> bool:
        """Kafka clients must authenticate with SASL."""
        return self.kafka_security_protocol in SASL_PROTOCOLS

    @property
    def kafka_tls(self) -> bool:
        """The Kafka listener speaks TLS."""
        return self.kafka_security_protocol in TLS_PROTOCOLS

    @property
    def sasl_mechanism_list(self) -> tuple[str, ...]:
        """The enabled SASL mechanisms, in the configured order."""
        return tuple(name.strip() for name in self.sasl_mechanisms.split(",") if name.strip())

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced."""
        return replace(self, **changes)
