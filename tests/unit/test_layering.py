"""The import graph keeps the house rules of DESIGN §1.

- `streamhouse/log` and `streamhouse/kafka` are pure: they import nothing from
  `streamhouse.io` (nor `engine`, `server`).
- Only `streamhouse/io` and `streamhouse/server` touch the world: no other
  engine module imports time, random, socket, boto3, sqlite3 (or threads).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "streamhouse"
WORLD_MODULES = {"time", "random", "socket", "boto3", "botocore", "sqlite3", "threading"}
WORLD_PACKAGES = {"io", "server"}
PURE_PACKAGES = {"log", "kafka"}
FORBIDDEN_IN_PURE = ("streamhouse.io", "streamhouse.engine", "streamhouse.server")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(PACKAGE_ROOT).parts[0], path)
        for path in sorted(PACKAGE_ROOT.rglob("*.py"))
        if len(path.relative_to(PACKAGE_ROOT).parts) > 1
    ]


def test_pure_packages_import_no_adapters() -> None:
    breaches = [
        f"{path.relative_to(PACKAGE_ROOT)} imports {name}"
        for package, path in _modules()
        if package in PURE_PACKAGES
        for name in _imports(path)
        if name.startswith(FORBIDDEN_IN_PURE)
    ]
    assert not breaches, breaches


def test_only_io_and_server_touch_the_world() -> None:
    breaches = [
        f"{path.relative_to(PACKAGE_ROOT)} imports {name}"
        for package, path in _modules()
        if package not in WORLD_PACKAGES
        for name in _imports(path)
        if name.split(".")[0] in WORLD_MODULES
    ]
    assert not breaches, breaches


def test_the_checker_sees_a_breach(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom streamhouse.io.local_disk import LocalDisk\n")
    assert _imports(sample) == ["time", "streamhouse.io.local_disk"]


def test_every_package_was_walked() -> None:
    walked = {package for package, _ in _modules()}
    assert {"log", "kafka", "engine", "io", "ports"} <= walked
