"""The metadata store's relational schema: SQLAlchemy Core tables, one MetaData.

The Alembic migrations in `streamhouse/io/sql/migrations/versions/` create these
tables explicitly; this module is what queries are written against.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)

# Deterministic constraint names, so later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

topics = Table(
    "topics",
    metadata,
    Column("name", String, primary_key=True),
    Column("partition_count", Integer, nullable=False),
    Column("configs", Text, nullable=False),  # JSON object of str -> str
    Column("created_ms", BigInteger, nullable=False),
)

partitions = Table(
    "partitions",
    metadata,
    Column(
        "topic",
        String,
        ForeignKey("topics.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("partition", Integer, primary_key=True),
    Column("leader_agent", String, nullable=True),
    Column("leader_epoch", BigInteger, nullable=False),
    Column("lease_expires_ms", BigInteger, nullable=False),
    Column("durable_end_offset", BigInteger, nullable=False),
    Column("log_start_offset", BigInteger, nullable=False),
    # the agent a reassignment moved the partition to (None: wherever the balancer places it)
    Column("preferred_agent", String, nullable=True),
    # log compaction's checkpoint: the cleaned part of the log ends here; the store's time
    # of the last round that swapped (None: never compacted)
    Column("cleaned_end_offset", BigInteger, nullable=False, server_default="0"),
    Column("compacted_ms", BigInteger, nullable=True),
)

producer_states = Table(
    "producer_states",
    metadata,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("producer_id", BigInteger, primary_key=True),
    Column("producer_epoch", Integer, nullable=False),
    Column("batches", Text, nullable=False),  # JSON [[first_seq, last_seq, base, last], ...]
    Column("last_append_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["topic", "partition"], ["partitions.topic", "partitions.partition"], ondelete="CASCADE"
    ),
)

# A producer's transaction in a partition: open while last_offset is NULL, aborted once it
# holds the ABORT marker's offset (committed transactions leave no row)
partition_txns = Table(
    "partition_txns",
    metadata,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("producer_id", BigInteger, primary_key=True),
    Column("first_offset", BigInteger, primary_key=True),
    Column("last_offset", BigInteger, nullable=True),
    ForeignKeyConstraint(
        ["topic", "partition"], ["partitions.topic", "partitions.partition"], ondelete="CASCADE"
    ),
    Index("ix_partition_txns_last_offset", "topic", "partition", "last_offset"),
)

group_generations = Table(
    "group_generations",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("next_generation", BigInteger, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String, primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)
PRODUCER_ID_COUNTER = "producer_id"
NODE_ID_COUNTER = "node_id"
# Set by a rebuild from the bucket: the first leader epoch of a partition created after it and
# the first generation of a group it does not know (the bucket cannot tell what a partition or
# group missing from it used before the store was lost). No row: 0 and 1, as in a new store.
NEW_PARTITION_EPOCH_FLOOR = "new_partition_epoch_floor"
NEW_GROUP_GENERATION_FLOOR = "new_group_generation_floor"
# One above the highest schema id ever used (imports included; a rebuild leaps it). No row: 1.
SCHEMA_ID_COUNTER = "schema_id"

# Registered agents (cluster membership): a node id per agent id, kept across restarts, and
# the heartbeat's expiry in the store's time.
agents = Table(
    "agents",
    metadata,
    Column("agent_id", String, primary_key=True),
    Column("node_id", Integer, nullable=False),
    Column("host", String, nullable=False),
    Column("port", Integer, nullable=False),
    Column("started_ms", BigInteger, nullable=False),
    Column("heartbeat_expires_ms", BigInteger, nullable=False),
    UniqueConstraint("node_id"),
)

retired_epochs = Table(
    "retired_epochs",
    metadata,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("leader_epoch", BigInteger, nullable=False),  # the first epoch a namesake may use
)

objects = Table(
    "objects",
    metadata,
    Column("key", String, primary_key=True),
    Column("agent", String, nullable=False),
    Column("org", String, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    # The store's time when its last segment row went (None: never had rows taken away)
    Column("released_ms", BigInteger, nullable=True),
)

segments = Table(
    "segments",
    metadata,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("base_offset", BigInteger, primary_key=True),
    Column("last_offset", BigInteger, nullable=False),
    Column("leader_epoch", BigInteger, nullable=False),
    Column("max_timestamp_ms", BigInteger, nullable=False),
    Column("object_key", String, ForeignKey("objects.key"), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("length", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["topic", "partition"],
        ["partitions.topic", "partitions.partition"],
        ondelete="CASCADE",
    ),
    Index("ix_segments_object_key", "object_key"),
)

# The first outcome of each flush commit, so a replay returns it even when
# every partition was fenced (and so no segment row names the object).
flush_outcomes = Table(
    "flush_outcomes",
    metadata,
    Column("object_key", String, primary_key=True),
    Column("committed", Text, nullable=False),  # JSON list of [topic, partition]
    Column("fenced", Text, nullable=False),  # JSON list of [topic, partition]
)

# Consumer groups' committed offsets (OffsetCommit), one row per group and partition.
committed_offsets = Table(
    "committed_offsets",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, nullable=False),
    Column("leader_epoch", Integer, nullable=False),
    Column("metadata", Text, nullable=True),
    Column("commit_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["topic", "partition"],
        ["partitions.topic", "partitions.partition"],
        ondelete="CASCADE",
    ),
    Index("ix_committed_offsets_topic", "topic", "partition"),
)

# Each transactional id's coordinator state (ports/transactions.py), one row per id; `slot`
# is its coordinator slot's partition, so a coordinator taking a slot lists its transactions.
transactions = Table(
    "transactions",
    metadata,
    Column("transactional_id", String, primary_key=True),
    Column("slot", Integer, nullable=False),
    Column("producer_id", BigInteger, nullable=False),
    Column("producer_epoch", Integer, nullable=False),
    Column("state", String, nullable=False),  # TxnState's value: "Ongoing", ...
    Column("timeout_ms", BigInteger, nullable=False),
    Column("partitions", Text, nullable=False),  # JSON [[topic, partition], ...] sorted
    Column("groups", Text, nullable=False),  # JSON [group_id, ...] sorted
    Column("start_ms", BigInteger, nullable=False),
    Column("update_ms", BigInteger, nullable=False),
    Column("prior_epoch", Integer, nullable=False),
    Index("ix_transactions_slot", "slot"),
    Index("ix_transactions_producer_id", "producer_id"),
)

# Offsets committed inside open transactions (TxnOffsetCommit), moved into committed_offsets
# when the producer's transaction commits and deleted when it aborts.
txn_offsets = Table(
    "txn_offsets",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("producer_id", BigInteger, primary_key=True),
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("offset", BigInteger, nullable=False),
    Column("leader_epoch", Integer, nullable=False),
    Column("metadata", Text, nullable=True),
    Column("commit_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["topic", "partition"],
        ["partitions.topic", "partitions.partition"],
        ondelete="CASCADE",
    ),
    Index("ix_txn_offsets_producer_id", "producer_id"),
)

# Cluster jobs run by one agent at a time (ports/jobs.py): who claimed each last, in the store's
# time. Transient: never part of a metadata snapshot.
job_claims = Table(
    "job_claims",
    metadata,
    Column("name", String, primary_key=True),
    Column("agent", String, nullable=False),
    Column("claimed_ms", BigInteger, nullable=False),
)


# The schema registry (ports/schemas.py). A schema row is never deleted: its id stays its
# content's for good, so the same content registered again gets it back.
registry_schemas = Table(
    "registry_schemas",
    metadata,
    Column("schema_id", BigInteger, primary_key=True, autoincrement=False),
    Column("schema_type", String, nullable=False),  # AVRO, JSON or PROTOBUF
    Column("text", Text, nullable=False),
    Column("metadata", Text, nullable=True),  # JSON text, kept as received
    Column("rule_set", Text, nullable=True),  # JSON text, kept as received
    Column("fingerprint", String, nullable=False),
    UniqueConstraint("fingerprint"),
)

# A schema's references in its own order (`position`), indexed by what they name so a delete
# finds who refers to a subject version.
registry_references = Table(
    "registry_references",
    metadata,
    Column(
        "schema_id",
        BigInteger,
        ForeignKey("registry_schemas.schema_id"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("name", String, nullable=False),
    Column("subject", String, nullable=False),
    Column("version", Integer, nullable=False),
    Index("ix_registry_references_subject", "subject", "version"),
)

registry_subject_versions = Table(
    "registry_subject_versions",
    metadata,
    Column("subject", String, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("schema_id", BigInteger, ForeignKey("registry_schemas.schema_id"), nullable=False),
    Column("deleted", Boolean, nullable=False),  # soft-deleted: hidden, number still taken
    Index("ix_registry_subject_versions_schema_id", "schema_id"),
)

# Configs (JSON text) and modes per subject; GLOBAL ("") is the registry's own.
registry_configs = Table(
    "registry_configs",
    metadata,
    Column("subject", String, primary_key=True),
    Column("config", Text, nullable=False),
)

registry_modes = Table(
    "registry_modes",
    metadata,
    Column("subject", String, primary_key=True),
    Column("mode", String, nullable=False),
)


# Tenancy (ports/tenancy.py): orgs and what belongs to their security, deleted with the org.
# The migration seeds the embedded org `default`; alone, it leaves the store blank for a rebuild.
orgs = Table(
    "orgs",
    metadata,
    Column("name", String, primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String, primary_key=True),
    Column("org", String, ForeignKey("orgs.name", ondelete="CASCADE"), nullable=False),
    Column("role", String, nullable=False),
    Column("secret_hash", String, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Index("ix_api_keys_org", "org"),
)

# Salt and keys as base64 text: a snapshot carries integers, strings and null, never bytes.
scram_credentials = Table(
    "scram_credentials",
    metadata,
    Column("user", String, primary_key=True),
    Column("mechanism", String, primary_key=True),
    Column("org", String, ForeignKey("orgs.name", ondelete="CASCADE"), nullable=False),
    Column("salt", Text, nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("stored_key", Text, nullable=False),
    Column("server_key", Text, nullable=False),
    Index("ix_scram_credentials_org", "org"),
)

# Every column is the key: a binding added twice (even by two agents at once) is kept once.
acls = Table(
    "acls",
    metadata,
    Column("org", String, ForeignKey("orgs.name", ondelete="CASCADE"), primary_key=True),
    Column("resource_type", Integer, primary_key=True),
    Column("resource_name", String, primary_key=True),
    Column("pattern_type", Integer, primary_key=True),
    Column("principal", String, primary_key=True),
    Column("host", String, primary_key=True),
    Column("operation", Integer, primary_key=True),
    Column("permission", Integer, primary_key=True),
)

quotas = Table(
    "quotas",
    metadata,
    Column("org", String, ForeignKey("orgs.name", ondelete="CASCADE"), primary_key=True),
    Column("entity", Text, primary_key=True),  # JSON [[type, name or null], ...] by type
    Column("key", String, primary_key=True),
    Column("value", Double, nullable=False),
)


def counter_value(conn: Connection, name: str, default: int) -> int:
    """The value of counter `name`, or `default` without its row."""
    value = conn.execute(select(counters.c.next_value).where(counters.c.name == name)).scalar()
    return default if value is None else int(value)
