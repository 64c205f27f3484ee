"""What a SQL text asks, read with sqlglot (DuckDB's dialect) before DuckDB sees it: whether the
statement is one we run, which topics it names, and which functions it must not call.

Allowed: one query (SELECT, WITH, set operations), optionally after EXPLAIN (our listing of the
objects the scan reads) or EXPLAIN ANALYZE (DuckDB's own profile of the query run).
CREATE / DROP MATERIALIZED VIEW are recognised and handed to the views hook. Anything else
(COPY, ATTACH, INSTALL, LOAD, PRAGMA, SET, CREATE TABLE, several statements, ...) is refused.
Table functions in FROM are limited to the window functions and a few generators; functions
that read files, URLs or other SQL text are refused by name (and DuckDB runs with external
access disabled besides, so a name missed here still cannot touch the filesystem).

Topics are the tables a query names in FROM and JOIN (not its CTEs) and the first argument of
tumble/hop/session, as written: quote a topic whose name is not an identifier ("orders-v2").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import ClassVar

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType


class WindowedDuckDB(DuckDB):
    """DuckDB's dialect, where `session` is a name (our session window table function), as
    DuckDB itself reads it, not the SESSION keyword sqlglot takes it for."""

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            word: kind for word, kind in DuckDB.Tokenizer.KEYWORDS.items() if word != "SESSION"
        }


DIALECT = WindowedDuckDB
SQL_TEXT_CHARS_MAX = 100_000
WINDOW_FUNCTIONS = frozenset({"tumble", "hop", "session"})
TABLE_FUNCTIONS_ALLOWED = WINDOW_FUNCTIONS | {"range", "generate_series", "unnest"}
# functions that read files, URLs, other SQL text or the process' environment
FUNCTIONS_REFUSED = frozenset(
    {"glob", "query", "query_table", "getenv", "sniff_csv", "load_extension", "sql_auto_complete"}
)
FUNCTION_PREFIXES_REFUSED = (
    *("read_", "parquet_", "iceberg_", "delta_", "sqlite_", "postgres_", "mysql_"),
    *("duckdb_", "json_execute", "icu_"),
)
_EXPLAIN = re.compile(r"^\s*explain\b(\s+analyze\b)?", re.IGNORECASE)
_VIEW_STATEMENT = re.compile(r"^\s*(create|drop)\s+materialized\s+view\b", re.IGNORECASE)


class StatementRefused(ValueError):
    """The text is not a statement we run; str(e) says why."""


class Kind(enum.Enum):
    QUERY = "query"
    EXPLAIN = "explain"  # the objects the scan reads
    EXPLAIN_ANALYZE = "explain analyze"  # DuckDB's profile of the query, run
    VIEW = "view"  # CREATE / DROP MATERIALIZED VIEW: the views hook's


@dataclass(frozen=True)
class Statement:
    """A statement we run: its kind, the query (text and tree; None for a view statement) and
    the topics it names."""

    kind: Kind
    text: str  # the query DuckDB runs (EXPLAIN's prefix removed)
    tree: exp.Query | None
    topics: tuple[str, ...]


def read_statement(text: str) -> Statement:
    """The statement `text` holds; StatementRefused otherwise."""
    if len(text) > SQL_TEXT_CHARS_MAX:
        raise StatementRefused(f"the SQL text is longer than {SQL_TEXT_CHARS_MAX} characters")
    if _VIEW_STATEMENT.match(text):
        return Statement(Kind.VIEW, text, None, ())
    kind = Kind.QUERY
    found = _EXPLAIN.match(text)
    if found is not None:
        kind = Kind.EXPLAIN_ANALYZE if found.group(1) else Kind.EXPLAIN
        text = text[found.end() :]
    tree = _one_query(text)
    _check_functions(tree)
    return Statement(kind, text, tree, topics_named(tree))


def _one_query(text: str) -> exp.Query:
    try:
        parsed = [tree for tree in sqlglot.parse(text, dialect=DIALECT) if tree is not None]
    except (ParseError, TokenError) as error:
        raise StatementRefused(f"the SQL does not parse: {_first_line(str(error))}") from None
    if len(parsed) != 1:
        raise StatementRefused(f"send exactly one statement, not {len(parsed)}")
    (tree,) = parsed
    if isinstance(tree, exp.Condition):
        raise StatementRefused("the text is not a SQL query (SELECT, WITH or EXPLAIN)")
    if not isinstance(tree, exp.Query):
        shown = tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
        raise StatementRefused(
            f"only SELECT, WITH and EXPLAIN queries run here, not {shown}; "
            "materialized views are CREATE / DROP MATERIALIZED VIEW"
        )
    return tree


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def function_name(node: exp.Func) -> str:
    """A function call's name, lower case, as written."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_functions(tree: exp.Query) -> None:
    for node in tree.find_all(exp.Func):
        name = function_name(node)
        if name in FUNCTIONS_REFUSED or name.startswith(FUNCTION_PREFIXES_REFUSED):
            raise StatementRefused(f"the function {name} is not available in SQL over topics")
        if isinstance(node.parent, exp.Table) and name not in TABLE_FUNCTIONS_ALLOWED:
            allowed = ", ".join(sorted(TABLE_FUNCTIONS_ALLOWED))
            raise StatementRefused(
                f"the table function {name} is not available; FROM takes topics and {allowed}"
            )
    if any(isinstance(node, exp.ReadCSV) for node in tree.walk()):
        raise StatementRefused("reading files is not available in SQL over topics")


def topics_named(tree: exp.Query) -> tuple[str, ...]:
    """The topics the query reads, each once, in order of appearance."""
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found: dict[str, None] = {}
    for node in tree.walk():
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            if node.args.get("db") or node.args.get("catalog"):
                raise StatementRefused(
                    f"{node.sql(dialect=DIALECT)} is a qualified name; a topic is named alone "
                    '(quote a name holding dots: "my.topic")'
                )
            if node.name not in ctes:
                found[node.name] = None
        elif isinstance(node, exp.Func) and function_name(node) in WINDOW_FUNCTIONS:
            topic = window_topic(node)
            if topic not in ctes:
                found[topic] = None
    return tuple(found)


def window_topic(node: exp.Func) -> str:
    """The topic a window function's first argument names."""
    arguments = node.expressions if isinstance(node, exp.Anonymous) else []
    first = arguments[0] if arguments else None
    if isinstance(first, exp.Column) and not first.table:
        return str(first.name)
    if isinstance(first, exp.Literal) and first.is_string:
        return str(first.this)
    raise StatementRefused(
        f"{function_name(node)}'s first argument names a topic (as a bare or quoted name)"
    )


def occurrences(tree: exp.Query, topic: str) -> int:
    """How often the query reads `topic` (tables and window arguments)."""
    count = 0
    for node in tree.walk():
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            count += node.name == topic
        elif isinstance(node, exp.Func) and function_name(node) in WINDOW_FUNCTIONS:
            count += window_topic(node) == topic
    return count
