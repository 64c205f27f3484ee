"""The table of Kafka APIs the agent speaks and the version range of each that it advertises.

The ranges come from `kio`'s generated schemas (Kafka's own message JSON), so they stay
right when kio is upgraded. A handler module declares which keys it implements with
`advertise(...)`; the resulting `ApiTable` is what ApiVersions answers and what the
connection checks every request against.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from kio.schema.index import api_key_map, schema_name_map
from kio.static.constants import EntityType


class ApiKey(enum.IntEnum):
    """The API keys of DESIGN §4 and the cluster-shape admin set (values from the Kafka
    protocol)."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    WRITE_TXN_MARKERS = 27
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    ALTER_REPLICA_LOG_DIRS = 34
    DESCRIBE_LOG_DIRS = 35
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    INCREMENTAL_ALTER_CONFIGS = 44
    ALTER_PARTITION_REASSIGNMENTS = 45
    LIST_PARTITION_REASSIGNMENTS = 46
    OFFSET_DELETE = 47
    DESCRIBE_CLIENT_QUOTAS = 48
    ALTER_CLIENT_QUOTAS = 49
    DESCRIBE_USER_SCRAM_CREDENTIALS = 50
    ALTER_USER_SCRAM_CREDENTIALS = 51
    DESCRIBE_QUORUM = 55
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    DESCRIBE_TRANSACTIONS = 65
    LIST_TRANSACTIONS = 66
    DESCRIBE_TOPIC_PARTITIONS = 75


PRODUCE_ADVERTISED_MIN_VERSION = 0
"""librdkafka sends compressed batches only when Produce v0 is advertised (KAFKA-18659)."""
PRODUCE_SERVED_MIN_VERSION = 3
"""Produce below v3 (MessageSet v0/v1, no transactional id) is answered UNSUPPORTED_VERSION."""
SASL_HANDSHAKE_MIN_VERSION = 1
"""SaslHandshake v0 would switch the connection to unframed SASL tokens: neither advertised
nor served (clients take v1 and SaslAuthenticate when both are advertised)."""


@dataclass(frozen=True, slots=True)
class ApiRange:
    """One advertised API: versions `min_version..max_version`; below `served_min` rejected."""

    key: ApiKey
    min_version: int
    max_version: int
    served_min: int

    def advertises(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version

    def serves(self, version: int) -> bool:
        return self.served_min <= version <= self.max_version


def kio_versions(key: ApiKey) -> tuple[int, int]:
    """The (min, max) request versions kio has a schema for."""
    versions = [
        version
        for version, entities in schema_name_map[api_key_map[key]].items()
        if EntityType.request in entities
    ]
    return min(versions), max(versions)


def _full_range(key: ApiKey) -> ApiRange:
    low, high = kio_versions(key)
    if key is ApiKey.PRODUCE:
        return ApiRange(
            key, PRODUCE_ADVERTISED_MIN_VERSION, high, max(low, PRODUCE_SERVED_MIN_VERSION)
        )
    if key is ApiKey.SASL_HANDSHAKE:
        return ApiRange(key, SASL_HANDSHAKE_MIN_VERSION, high, SASL_HANDSHAKE_MIN_VERSION)
    return ApiRange(key, low, high, low)


ALL_APIS: Mapping[ApiKey, ApiRange] = MappingProxyType({key: _full_range(key) for key in ApiKey})
"""Every API of DESIGN §4 at the full range kio can decode."""


@dataclass(frozen=True, slots=True)
class ApiTable:
    """The APIs one listener advertises, by key. ApiVersions is always present."""

    ranges: Mapping[int, ApiRange]

    def get(self, api_key: int) -> ApiRange | None:
        return self.ranges.get(api_key)

    def __iter__(self) -> Iterator[ApiRange]:
        return iter(sorted(self.ranges.values(), key=lambda api: api.key))

    def __len__(self) -> int:
        return len(self.ranges)


def advertise(
    implemented: Iterable[ApiKey], max_versions: Mapping[ApiKey, int] | None = None
) -> ApiTable:
    """The table for the implemented keys, each capped at `max_versions[key]` if given."""
    caps = max_versions or {}
    ranges: dict[int, ApiRange] = {}
    for key in {*implemented, ApiKey.API_VERSIONS}:
        full = ALL_APIS[key]
        high = min(full.max_version, caps.get(key, full.max_version))
        if high < full.served_min:
            raise ValueError(f"{key.name}: max version {high} is below v{full.served_min}")
        ranges[key] = ApiRange(key, full.min_version, high, full.served_min)
    return ApiTable(MappingProxyType(ranges))


def api_name(api_key: int) -> str:
    """A readable name for any key, known or not (for error messages)."""
    try:
        return ApiKey(api_key).name
    except ValueError:
        return api_key_map.get(api_key, "unknown").upper()
