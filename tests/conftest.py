"""Shared pytest setup: fixture plugins live in tests/fixtures/, one file per world piece."""

pytest_plugins: list[str] = ["tests.fixtures.moto_server", "tests.fixtures.postgres"]
