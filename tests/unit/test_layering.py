"""The import graph keeps the house rules of DESIGN §1.

- Floors, bottom up: the shared root modules (names, errors, config), the pure packages
  (`kafka`, `log`, `tenancy`, `schemas`), `ports`, `io`, `engine`, `server`, `sql`, `cli`,
  and on top the composition root (`agent.py`, `supervisor.py`, `__main__.py`) with `testing`.
  No module imports a floor above its own: the engine never imports a front door, a door never
  imports the composition root.
- Only `io`, `server` and the top floor touch the world: no other module imports time,
  random, socket, os, boto3, sqlite3 (or threads).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "streamhouse"
FLOORS: dict[str, int] = {
    "__init__": 0,
    "names": 0,
    "errors": 0,
    "config": 0,
    "kafka": 1,
    "log": 1,
    "tenancy": 1,
    "schemas": 1,
    "ports": 2,
    "io": 3,
    "engine": 4,
    "server": 5,
    "sql": 6,
    "cli": 7,
    "agent": 8,
    "__main__": 8,
    "supervisor": 8,
    "testing": 8,
}
WORLD_MODULES = {"time", "random", "socket", "os", "boto3", "botocore", "sqlite3", "threading"}
WORLD_FLOORS = {"io", "server", "agent", "supervisor", "__main__", "testing"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _floor_name(parts: tuple[str, ...]) -> str:
    """The floor a module path (relative to the package, or a dotted name's parts) is on."""
    return parts[0].removesuffix(".py")


def _modules() -> list[tuple[str, Path]]:
    return [
        (_floor_name(path.relative_to(PACKAGE_ROOT).parts), path)
        for path in sorted(PACKAGE_ROOT.rglob("*.py"))
    ]


def _upward_arrows(modules: list[tuple[str, Path]]) -> list[str]:
    arrows = []
    for floor, path in modules:
        for name in _imports(path):
            parts = tuple(name.split("."))
            if parts[0] != "streamhouse" or len(parts) < 2:
                continue
            target = _floor_name(parts[1:])
            if FLOORS[target] > FLOORS[floor]:
                arrows.append(f"{path.name} ({floor}) imports {name}")
    return arrows


def test_every_module_is_on_a_known_floor() -> None:
    unknown = sorted({floor for floor, _ in _modules()} - FLOORS.keys())
    assert not unknown, f"modules outside every floor: {unknown}; add them to FLOORS"


def test_no_import_runs_up_a_floor() -> None:
    arrows = _upward_arrows(_modules())
    assert not arrows, arrows


def test_only_io_server_and_the_root_touch_the_world() -> None:
    breaches = [
        f"{path.relative_to(PACKAGE_ROOT)} imports {name}"
        for floor, path in _modules()
        if floor not in WORLD_FLOORS
        for name in _imports(path)
        if name.split(".")[0] in WORLD_MODULES
    ]
    assert not breaches, breaches


def test_the_checker_sees_an_upward_arrow(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom streamhouse.server.kafka_listener import KafkaListener\n")
    assert _imports(sample) == ["time", "streamhouse.server.kafka_listener"]
    assert _upward_arrows([("engine", sample)]) == [
        "sample.py (engine) imports streamhouse.server.kafka_listener"
    ]
    assert _upward_arrows([("agent", sample)]) == []


def test_every_floor_was_walked() -> None:
    walked = {floor for floor, _ in _modules()}
    assert {"log", "kafka", "engine", "io", "ports", "server", "cli", "agent"} <= walked
