"""SQL over topics: DuckDB plans and runs queries over topics (a topic is a table), with
tumble/hop/session windows, batch and continuous. DuckDB is imported only under this package.

`connect` (streamhouse.sql.client), the notebook door, is loaded only when asked for, so that
importing streamhouse.sql stays light."""

from __future__ import annotations

from typing import Any

_CLIENT_NAMES = ("connect", "SqlClient", "SqlRequestError", "SqlUnreachable")


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from streamhouse.sql import client

        return getattr(client, name)
    raise AttributeError(f"module 'streamhouse.sql' has no attribute {name!r}")
