"""The partition of a keyed record as Kafka's clients choose it: murmur2 of the key bytes.

Java's default partitioner and librdkafka's `murmur2_random` take the 32-bit murmur2 hash
(seed 0x9747b28c) of the key, clear its sign bit and take it modulo the partition count, so
a key produced over REST or gRPC lands where a Kafka client would have put it.
"""

from __future__ import annotations

MURMUR2_SEED = 0x9747B28C
MURMUR2_M = 0x5BD1E995
MURMUR2_R = 24
MASK_32 = 0xFFFFFFFF
POSITIVE_31 = 0x7FFFFFFF


def murmur2(data: bytes) -> int:
    """The unsigned 32-bit murmur2 hash of `data` with Kafka's seed."""
    length = len(data)
    h = (MURMUR2_SEED ^ length) & MASK_32
    whole = length - length % 4
    for start in range(0, whole, 4):
        k = int.from_bytes(data[start : start + 4], "little")
        k = (k * MURMUR2_M) & MASK_32
        k ^= k >> MURMUR2_R
        k = (k * MURMUR2_M) & MASK_32
        h = ((h * MURMUR2_M) & MASK_32) ^ k
    rest = data[whole:]
    if rest:
        for position in reversed(range(len(rest))):
            h ^= rest[position] << (8 * position)
        h = (h * MURMUR2_M) & MASK_32
    h ^= h >> 13
    h = (h * MURMUR2_M) & MASK_32
    h ^= h >> 15
    return h


def partition_of_key(key: bytes, partition_count: int) -> int:
    """Kafka's default partition for `key` among `partition_count` partitions."""
    assert partition_count > 0, partition_count
    return (murmur2(key) & POSITIVE_31) % partition_count
