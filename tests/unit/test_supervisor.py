"""What each of `--processes N` gets (ports, ids, WAL directories, each locked by one process)
and how the supervisor's /metrics labels every process's samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamhouse.cli.main import build_app
from streamhouse.config import HTTP_DISABLED, Settings
from streamhouse.io.directory_lock import DirectoryInUse, locked_directory
from streamhouse.io.locations import process_directory, process_indexes_on_disk, wal_directory
from streamhouse.server.process_http import labelled, merged
from streamhouse.supervisor import holds_wal_entries, process_settings


def test_process_i_takes_kafka_port_plus_i_its_own_id_and_a_loopback_http_door() -> None:
    settings = Settings(kafka_port=9092, http_port=8080, agent_id="edge", data_dir="/d")
    first, second = (process_settings(settings, index) for index in (0, 1))
    assert (first.kafka_port, second.kafka_port) == (9092, 9093)
    assert (first.agent_id, second.agent_id) == ("edge", "edge-1")
    assert (first.http_port, first.http_host) == (0, "127.0.0.1")
    assert (first.processes, second.process_index) == (1, 1)
    assert wal_directory(first) == "/d/local"  # a single process's directory is process 0's
    assert wal_directory(second) == "/d/local-1"
    # one schema registry door per host: process 0 serves it, on the port the operator chose
    assert (first.schema_registry_port, second.schema_registry_port) == (8081, HTTP_DISABLED)
    assert (first.grpc_port, second.grpc_port) == (50051, HTTP_DISABLED)  # one gRPC door too


def test_process_i_advertises_the_advertised_port_plus_i() -> None:
    settings = Settings(kafka_port=9092, advertised_port=19092)
    first, second = (process_settings(settings, index) for index in (0, 1))
    assert (first.advertised_port, second.advertised_port) == (19092, 19093)
    unset = process_settings(Settings(kafka_port=9092), 1)
    assert unset.advertised_port == 0  # each process advertises the port it listens on


def test_any_free_port_and_no_http_stay_so_for_every_process() -> None:
    settings = Settings(kafka_port=0, http_port=HTTP_DISABLED)
    second = process_settings(settings, 1)
    assert (second.kafka_port, second.http_port, second.agent_id) == (0, HTTP_DISABLED, "")


def test_process_directories_on_disk_are_found_and_wal_entries_seen(tmp_path: Path) -> None:
    for index in (0, 2):
        Path(process_directory(str(tmp_path), index), "wal").mkdir(parents=True)
    (tmp_path / "local-x").mkdir()
    (tmp_path / "objects").mkdir()
    assert process_indexes_on_disk(str(tmp_path)) == [0, 2]
    wal = Path(process_directory(str(tmp_path), 2), "wal")
    (wal / "00000000000000000000.wal").write_bytes(b"")
    assert not holds_wal_entries(str(wal.parent))
    (wal / "00000000000000000001.wal").write_bytes(b"entry")
    assert holds_wal_entries(str(wal.parent))


def test_ports_beyond_the_last_are_refused() -> None:
    with pytest.raises(ValueError, match="kafka_port \\+ processes - 1"):
        Settings(kafka_port=65_535, processes=2)
    with pytest.raises(ValueError, match="processes must not be negative"):
        Settings(processes=-1)


def test_processes_flag_and_environment_reach_the_settings() -> None:
    seen: list[Settings] = []

    def run_agent(settings: Settings) -> int:
        seen.append(settings)
        return 0

    runner = CliRunner()
    assert runner.invoke(build_app(run_agent), ["agent", "--processes", "3"]).exit_code == 0
    environment = {"STREAMHOUSE_PROCESSES": "1"}
    assert runner.invoke(build_app(run_agent), ["agent"], env=environment).exit_code == 0
    assert [settings.processes for settings in seen] == [3, 1]


def test_metrics_of_every_process_are_one_family_labelled_by_process() -> None:
    exposition = (
        "# HELP streamhouse_produced_total produced\n"
        "# TYPE streamhouse_produced_total counter\n"
        'streamhouse_produced_total{topic="t"} 3.0\n'
    )
    families = merged([*labelled(exposition, 0), *labelled(exposition, 1)])
    assert len(families) == 1
    assert [(s.labels["process"], s.value) for s in families[0].samples] == [
        ("0", 3.0),
        ("1", 3.0),
    ]


def test_a_locked_directory_refuses_a_second_holder_until_released(tmp_path: Path) -> None:
    with (
        locked_directory(str(tmp_path / "local")),
        pytest.raises(DirectoryInUse, match=f"pid {os.getpid()}"),
        locked_directory(str(tmp_path / "local")),
    ):
        pass
    with locked_directory(str(tmp_path / "local")):
        pass
