"""The gRPC door's checked-in generated code is what tools/grpc-codegen makes of its proto
today: regenerated into a temporary directory, every file matches byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = "streamhouse/server/grpc"
GENERATED_FILES = (
    "streamhouse_pb2.py",
    "streamhouse_pb2.pyi",
    "streamhouse_pb2_grpc.py",
    "streamhouse_pb2_grpc.pyi",
)
CODEGEN_TIMEOUT_S = 60


def test_regenerating_the_proto_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "grpc-codegen"), str(tmp_path)],
        check=True,
        timeout=CODEGEN_TIMEOUT_S,
        capture_output=True,
    )
    for name in GENERATED_FILES:
        fresh = (tmp_path / GENERATED / name).read_bytes()
        checked_in = (ROOT / GENERATED / name).read_bytes()
        assert fresh == checked_in, f"{name} is stale: run .venv/bin/python tools/grpc-codegen"
