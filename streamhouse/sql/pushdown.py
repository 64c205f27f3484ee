"""The part of a query's WHERE clause the scan can use to read less of a topic.

Only when the query is one SELECT reading its single topic in FROM, directly or through
tumble() or hop() (which pass every row's columns through and place it by its own time alone;
not session(), whose bounds depend on the rows a filter would drop), with no join or set
operation, and only from the top-level AND conjuncts that compare a meta column with a literal:
`_partition` =, IN, BETWEEN; `_offset` =, >=, >, <=, <, BETWEEN; `_timestamp` =, >=, > (a
timestamp without a zone or in UTC: record timestamps do not follow offsets, so only a start
is used). DuckDB still evaluates the whole WHERE: the range only narrows what is read, so an
answer never changes; anything else in the WHERE is simply not pushed down.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

from sqlglot import exp

from streamhouse.sql.statements import function_name, occurrences, window_topic

OFFSET_END = 2**63 - 1
PER_ROW_WINDOWS = frozenset({"tumble", "hop"})
MICROS_PER_MILLI = 1000


@dataclass(frozen=True)
class ScanRange:
    """What of a topic the scan reads: partitions in [partition_low, partition_high] (and in
    `partitions` when given), offsets in [offset_from, offset_to), records from the first one
    stamped at or after `timestamp_from_ms`."""

    partitions: frozenset[int] | None = None
    partition_low: int = 0
    partition_high: int = 2**31 - 1
    offset_from: int = 0
    offset_to: int = OFFSET_END
    timestamp_from_ms: int | None = None

    def reads_partition(self, partition: int) -> bool:
        in_set = self.partitions is None or partition in self.partitions
        return in_set and self.partition_low <= partition <= self.partition_high

    @property
    def narrowed(self) -> bool:
        return self != EVERYTHING


EVERYTHING = ScanRange()


def scan_range(tree: exp.Query, topic: str) -> ScanRange:
    """The range of `topic` the query's WHERE allows (EVERYTHING when nothing is pushed down)."""
    if not isinstance(tree, exp.Select) or tree.args.get("joins"):
        return EVERYTHING
    source = tree.args.get("from_")
    table = source.this if isinstance(source, exp.From) else None
    if not isinstance(table, exp.Table) or _read_topic(table) != topic:
        return EVERYTHING
    if occurrences(tree, topic) != 1:
        return EVERYTHING
    where = tree.args.get("where")
    if not isinstance(where, exp.Where):
        return EVERYTHING
    names = {topic, table.alias_or_name}
    found = EVERYTHING
    condition = where.this
    conjuncts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    for conjunct in conjuncts:
        assert isinstance(conjunct, exp.Expression)
        found = _narrowed(found, conjunct, names)
    return found


def _read_topic(table: exp.Table) -> str | None:
    """The topic a FROM item reads row by row: named, or through tumble() or hop()."""
    if isinstance(table.this, exp.Identifier):
        return str(table.name)
    if isinstance(table.this, exp.Anonymous) and function_name(table.this) in PER_ROW_WINDOWS:
        return window_topic(table.this)
    return None


def _narrowed(found: ScanRange, node: exp.Expression, names: set[str]) -> ScanRange:
    if isinstance(node, exp.Paren):
        return _narrowed(found, node.this, names)
    if isinstance(node, exp.In):
        column = _meta(node.this, names)
        values = [_integer(item) for item in node.expressions]
        if column != "_partition" or node.args.get("query") or None in values:
            return found
        wanted = frozenset(v for v in values if v is not None)
        partitions = wanted if found.partitions is None else found.partitions & wanted
        return replace(found, partitions=partitions)
    if isinstance(node, exp.Between):
        low = exp.GTE(this=node.this, expression=node.args["low"])
        high = exp.LTE(this=node.this, expression=node.args["high"])
        return _narrowed(_narrowed(found, low, names), high, names)
    if isinstance(node, (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        return _compared(found, node, names)
    return found


_FLIPPED: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.EQ: exp.EQ,
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
}


def _compared(found: ScanRange, node: exp.Expression, names: set[str]) -> ScanRange:
    kind: type[exp.Expression] = type(node)
    left, right = node.this, node.expression
    if _meta(left, names) is None:
        left, right, kind = right, left, _FLIPPED[kind]
    column = _meta(left, names)
    if column == "_timestamp":
        micros = _timestamp_micros(right)
        if micros is None or kind not in (exp.EQ, exp.GT, exp.GTE):
            return found
        start_ms = micros // MICROS_PER_MILLI  # `>` a time within a millisecond starts there
        if found.timestamp_from_ms is not None:
            start_ms = max(start_ms, found.timestamp_from_ms)
        return replace(found, timestamp_from_ms=start_ms)
    value = _integer(right)
    if column is None or value is None:
        return found
    low, high = _bounds(kind, value)
    if column == "_offset":
        return replace(
            found,
            offset_from=max(found.offset_from, low or 0),
            offset_to=min(found.offset_to, OFFSET_END if high is None else high + 1),
        )
    return replace(
        found,
        partition_low=max(found.partition_low, low if low is not None else found.partition_low),
        partition_high=min(
            found.partition_high, high if high is not None else found.partition_high
        ),
    )


def _bounds(kind: type[exp.Expression], value: int) -> tuple[int | None, int | None]:
    """The inclusive bounds `column <kind> value` sets on an integer column."""
    if kind is exp.EQ:
        return value, value
    if kind is exp.GT:
        return value + 1, None
    if kind is exp.GTE:
        return value, None
    if kind is exp.LT:
        return None, value - 1
    return None, value


def _meta(node: exp.Expression, names: set[str]) -> str | None:
    """The meta column `node` names (bare, or by the topic's name or alias)."""
    if not isinstance(node, exp.Column) or node.name not in ("_partition", "_offset", "_timestamp"):
        return None
    if node.table and node.table not in names:
        return None
    return str(node.name)


def _integer(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Neg):
        inner = _integer(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return int(node.this)
        except ValueError:
            return None  # a decimal: not pushed down
    return None


def _timestamp_micros(node: exp.Expression) -> int | None:
    """A timestamp literal (`TIMESTAMP '…'` or text DuckDB casts) as UTC microseconds; None for
    anything else, or a time in another zone than UTC."""
    if isinstance(node, exp.Cast) and node.to.this in (
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPNTZ,
    ):
        node = node.this
    if not (isinstance(node, exp.Literal) and node.is_string):
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(node.this))
    except ValueError:
        return None
    if moment.tzinfo is not None and moment.utcoffset() != datetime.timedelta(0):
        return None
    moment = moment.replace(tzinfo=datetime.UTC)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (moment - epoch) // datetime.timedelta(microseconds=1)
