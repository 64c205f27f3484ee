"""Conformance of the metadata adapters (SQLite file, simulator, PostgreSQL): a suite per port."""
