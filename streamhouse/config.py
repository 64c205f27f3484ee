"""One frozen settings object for an agent; every bound is named here, units last."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Settings:
    """Every tunable of an agent. Defaults are the embedded, single-agent setup."""

    data_dir: str = "./data"
    metadata_url: str = ""  # empty: sqlite file under data_dir
    object_store_url: str = ""  # empty: local directory under data_dir
    org: str = "default"
    agent_id: str = ""  # empty: generated once and kept in data_dir

    # WAL
    wal_segment_bytes_max: int = 64 * MIB
    wal_group_bytes_max: int = 4 * MIB
    wal_group_wait_ms: int = 0  # extra wait to grow a group; appends queue up during fsync anyway
    wal_queue_bytes_max: int = 64 * MIB
    wal_entry_bytes_max: int = 16 * MIB
    wal_disk_reserve_bytes: int = 64 * MIB

    # Flush to the object store
    flush_interval_ms: int = 200
    flush_bytes_max: int = 8 * MIB
    flush_pending_bytes_max: int = 256 * MIB
    flush_retry_backoff_ms_max: int = 5_000
    zstd_level: int = 3

    # Partitions and leases
    lease_ttl_ms: int = 10_000
    tail_bytes_max: int = 256 * MIB
    batch_bytes_max: int = 1 * MIB
    default_partition_count: int = 1

    # Object store client (S3)
    s3_endpoint_url: str = ""  # empty: AWS; set for MinIO, moto, other S3-compatible stores
    s3_region: str = "us-east-1"
    s3_multipart_threshold_bytes: int = 16 * MIB
    s3_part_bytes: int = 8 * MIB
    s3_timeout_ms: int = 10_000
    s3_attempts_max: int = 5

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields replaced."""
        return replace(self, **changes)
