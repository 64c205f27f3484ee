"""SQL adapters of the metadata ports (SQLite or PostgreSQL through SQLAlchemy Core).

One module per port holds its adapter and its statements (`topics`, `leases`,
`producers`, `groups`, `membership`); `transactions` runs them, `schema` names the tables,
`migrations` creates them, and `store` assembles the whole store.
"""
