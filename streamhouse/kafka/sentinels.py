"""Kafka's sentinel values, each defined once: how a field on the wire says "none", "unknown"
or "from the end"."""

from __future__ import annotations

NO_OFFSET = -1
NO_LEADER_EPOCH = -1  # also: a request that names no current leader epoch (KIP-320)
NO_TIMESTAMP = -1
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_GENERATION = -1
NO_NODE_ID = -1  # no broker or coordinator is known
NO_PORT = -1
NO_PREFERRED_REPLICA = -1  # Fetch: read from the leader
EARLIEST_TIMESTAMP = -2  # ListOffsets: the log start offset
LATEST_TIMESTAMP = -1  # ListOffsets: the high watermark
LATEST_TIERED_TIMESTAMP = -5  # ListOffsets: the last offset in remote storage (KIP-1005)
DELETE_TO_HIGH_WATERMARK = -1  # DeleteRecords: delete everything below the high watermark
READ_UNCOMMITTED = 0  # Fetch, ListOffsets isolation level: up to the high watermark
READ_COMMITTED = 1  # up to the last stable offset, aborted transactions listed
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)  # Metadata, DescribeGroups: operations not computed
