"""One query's DuckDB connection: the topics registered as Arrow tables under their names, the
window table functions installed, then locked down (no filesystem or network access, no
Python-variable scans, configuration locked) and run in a worker thread with its result
bounded in rows. A fresh in-memory connection per query: nothing outlives it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from streamhouse.sql.windows import install_window_functions

RESULT_BATCH_ROWS = 10_000


class ResultTooLarge(Exception):
    """The result has more rows than the bound."""


class QueryFailed(Exception):
    """DuckDB refused or failed the query; str(e) is its message."""


class QueryInterrupted(Exception):
    """The query was interrupted (its time ran out)."""


@dataclass(frozen=True)
class EngineLimits:
    threads: int
    memory_bytes_max: int
    result_rows_max: int


class QueryRun:
    """One query on its own connection; `run` in a worker thread, `interrupt` from anywhere."""

    def __init__(self, tables: Mapping[str, pa.Table], limits: EngineLimits) -> None:
        self._limits = limits
        self._connection = duckdb.connect(
            ":memory:",
            config={
                "threads": limits.threads,
                "memory_limit": f"{limits.memory_bytes_max}B",
                "python_enable_replacements": False,  # never scan the caller's Python variables
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        for name, table in tables.items():
            self._connection.register(name, table)
        install_window_functions(self._connection)
        self._connection.execute("SET enable_external_access = false")
        self._connection.execute("SET lock_configuration = true")

    def run(self, text: str) -> pa.Table:
        """The answer; ResultTooLarge past the row bound, QueryFailed for DuckDB's refusals."""
        try:
            reader = self._connection.sql(text).to_arrow_reader(RESULT_BATCH_ROWS)
            batches: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                rows += batch.num_rows
                if rows > self._limits.result_rows_max:
                    raise ResultTooLarge()
                batches.append(batch)
            return pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.InterruptException:
            raise QueryInterrupted() from None
        except duckdb.Error as error:
            raise QueryFailed(str(error)) from None
        finally:
            self._connection.close()

    def interrupt(self) -> None:
        with contextlib.suppress(duckdb.Error):  # it finished and closed meanwhile
            self._connection.interrupt()
