"""Shared pytest setup: fixture plugins live in tests/fixtures/, one file per world piece."""

from tests.chaos.stores import describe_stores

pytest_plugins: list[str] = [
    "tests.fixtures.moto_server",
    "tests.fixtures.postgres",
    "tests.fixtures.views_agent",
]


def pytest_report_header() -> str:
    """Which stores the chaos suite runs on: containers where Docker runs, else local ones."""
    return f"chaos stores: {describe_stores()}"
