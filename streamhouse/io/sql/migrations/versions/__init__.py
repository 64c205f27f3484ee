"""Alembic revision scripts of the metadata store, one file per schema change."""
