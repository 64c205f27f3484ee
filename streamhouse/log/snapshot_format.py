"""The metadata snapshot format: every table of the metadata store, versioned and checksummed.

    [header 20 B: magic "SHS1", version, flags, reserved, payload CRC32C, payload length]
    [payload: zstd of one JSON document]

The document holds the schema revision the rows were read at, the snapshot's sequence number,
the agent that wrote it and when, and each table as its column names and rows (JSON values:
integers, floats, strings, null; the store keeps bytes as base64 text). Snapshots live under
`SNAPSHOT_PREFIX`, keyed by a zero-padded sequence number, so the newest sorts last and a key
is never reused.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import crc32c
import zstandard

from streamhouse.errors import CorruptObject

FORMAT_VERSION = 1
HEADER = struct.Struct(">4sBBHIQ")
MAGIC = b"SHS1"
SNAPSHOT_PREFIX = "metadata/snapshots/"
SNAPSHOT_SUFFIX = ".snap"
SEQ_DIGITS = 16
SNAPSHOT_RAW_BYTES_MAX = 4 * 1024 * 1024 * 1024  # what a decoder agrees to inflate

Value = int | float | str | None  # floats: quotas (a JSON number keeps a double exactly)


@dataclass(frozen=True)
class TableDump:
    """One table's rows, each a tuple in `columns` order."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]


@dataclass(frozen=True)
class MetadataDump:
    """Every table of the metadata store read in one transaction, at `schema_revision`."""

    schema_revision: str
    tables: Mapping[str, TableDump]

    def row_count(self) -> int:
        return sum(len(table.rows) for table in self.tables.values())


@dataclass(frozen=True)
class Snapshot:
    """A dump as written to the bucket."""

    seq: int
    agent: str
    created_ms: int
    dump: MetadataDump


def snapshot_key(seq: int) -> str:
    assert 0 <= seq < 10**SEQ_DIGITS, seq
    return f"{SNAPSHOT_PREFIX}{seq:0{SEQ_DIGITS}d}{SNAPSHOT_SUFFIX}"


def seq_of_key(key: str) -> int | None:
    """The sequence number a snapshot key carries, or None for any other key."""
    if not key.startswith(SNAPSHOT_PREFIX) or not key.endswith(SNAPSHOT_SUFFIX):
        return None
    digits = key[len(SNAPSHOT_PREFIX) : -len(SNAPSHOT_SUFFIX)]
    if len(digits) != SEQ_DIGITS or not digits.isdigit():
        return None
    return int(digits)


def encode_snapshot(snapshot: Snapshot, zstd_level: int = 3) -> bytes:
    dump = snapshot.dump
    document = {
        "schema_revision": dump.schema_revision,
        "seq": snapshot.seq,
        "agent": snapshot.agent,
        "created_ms": snapshot.created_ms,
        "tables": {
            name: {"columns": list(table.columns), "rows": [list(row) for row in table.rows]}
            for name, table in sorted(dump.tables.items())
        },
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    payload = zstandard.ZstdCompressor(level=zstd_level).compress(raw)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0, crc32c.crc32c(payload), len(payload))
    return header + payload


def decode_snapshot(data: bytes) -> Snapshot:
    """Check and decode a snapshot. Raises CorruptObject, naming what is wrong."""
    if len(data) < HEADER.size:
        raise CorruptObject(f"snapshot of {len(data)} bytes is shorter than its header")
    magic, version, flags, reserved, checksum, length = HEADER.unpack_from(data)
    if magic != MAGIC or (flags, reserved) != (0, 0):
        raise CorruptObject(f"snapshot header has magic {magic!r}: not a StreamHouse snapshot")
    if version != FORMAT_VERSION:
        raise CorruptObject(f"snapshot format version {version} is not {FORMAT_VERSION}")
    payload = data[HEADER.size :]
    if len(payload) != length or crc32c.crc32c(payload) != checksum:
        raise CorruptObject("snapshot fails its checksum (truncated or damaged)")
    try:
        raw = zstandard.ZstdDecompressor().decompress(
            payload, max_output_size=SNAPSHOT_RAW_BYTES_MAX
        )
        return _snapshot_of(json.loads(raw))
    except (zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(f"snapshot payload is malformed: {exc}") from exc


def _snapshot_of(document: dict[str, Any]) -> Snapshot:
    tables = {
        str(name): TableDump(
            tuple(str(column) for column in table["columns"]),
            tuple(tuple(_value(v) for v in row) for row in table["rows"]),
        )
        for name, table in document["tables"].items()
    }
    for name, table in tables.items():
        width = len(table.columns)
        if any(len(row) != width for row in table.rows):
            raise ValueError(f"table {name} has rows that do not match its {width} columns")
    dump = MetadataDump(str(document["schema_revision"]), tables)
    return Snapshot(int(document["seq"]), str(document["agent"]), int(document["created_ms"]), dump)


def _value(value: Any) -> Value:
    if value is None or isinstance(value, int | float | str):
        return value
    raise ValueError(f"snapshot value {value!r} is not a number, a string or null")
