"""Start a real `streamhouse agent` process on free loopback ports and wait until it serves;
the one starter e2e tests, benchmarks and unit tests share. A process that dies is reported at
once, with the last lines of its log."""

from __future__ import annotations

import atexit
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamhouse.testing.network import LOOPBACK, free_loopback_port

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30
START_POLL_S = 0.05
CONNECT_TIMEOUT_S = 0.2
LOG_TAIL_LINES = 40


_STARTED: list[subprocess.Popen[bytes]] = []  # killed at exit if a test left one running


@atexit.register
def _kill_leftovers() -> None:
    """The safety net under every test: no agent process outlives the process that started
    it, even when a test failed before stopping its agent."""
    for process in _STARTED:
        if process.poll() is None:
            process.kill()
            process.wait()


class AgentProcessFailed(RuntimeError):
    """The agent process did not start, died, or stopped with a failure exit code."""


@dataclass
class AgentProcess:
    """A running `streamhouse agent` process and where it serves."""

    process: subprocess.Popen[bytes]
    port: int  # Kafka
    http_port: int  # -1 when HTTP is off
    data_dir: Path
    log_path: Path
    signalled: set[int] = field(default_factory=set)
    kafka_ports: list[int] = field(default_factory=list)  # every process's (--processes N)
    registry_port: int = -1  # the schema registry's; -1 when off
    grpc_port: int = -1  # the gRPC door's; -1 when off
    rest_port: int = -1  # the REST proxy's; -1 when off

    @property
    def registry_url(self) -> str:
        return f"http://{LOOPBACK}:{self.registry_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def http_base(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *_: object) -> None:
        """Never leave a process behind, whatever the test did: stop it, kill if it hangs."""
        if self.process.poll() is not None:
            return
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the agent wrote (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise AgentProcessFailed, with the log's last lines, if the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise AgentProcessFailed(self._exited(code))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (the agent flushes and exits), wait; returns the exit code."""
        if self.process.poll() is None:
            self.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout_s)
        return self.process.returncode

    def stop_cleanly(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop, and raise AgentProcessFailed unless the agent exited 0 or by a signal the
        test sent itself (a deliberate kill)."""
        code = self.stop(timeout_s)
        if code != 0 and -code not in self.signalled:
            raise AgentProcessFailed(self._exited(code))

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone (nothing is flushed)."""
        self.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_S)

    def health(self) -> list[dict[str, Any]]:
        """Every agent process as the supervisor's /health lists it (--processes N)."""
        with urllib.request.urlopen(self.http_base + "/health", timeout=STOP_TIMEOUT_S) as answer:
            processes: list[dict[str, Any]] = json.load(answer)["processes"]
        return processes

    def send_signal(self, signum: int) -> None:
        self.signalled.add(signum)
        self.process.send_signal(signum)

    def _exited(self, code: int) -> str:
        return (
            f"agent (pid {self.pid}) exited with {code}; last lines of {self.log_path}:\n"
            f"{self.log_tail()}"
        )


def start_agent_process(
    data_dir: Path,
    *extra_args: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
    module: str = "streamhouse",
    cwd: Path | None = None,
) -> AgentProcess:
    """Start `python -m streamhouse agent --data-dir DATA_DIR --processes 1` (unless
    `extra_args` names --processes) on free loopback Kafka and HTTP ports (unless `extra_args`
    names them) and return once it accepts connections. Raises
    AgentProcessFailed, with the last lines of the agent's log, if the process exits or does not
    listen within `timeout_s`. `module`: another entry point with the same command line (a
    test's altered agent), run from `cwd`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    kafka_port = _named_port(extra_args, "--kafka-port") or free_loopback_port()
    http_port = _named_port(extra_args, "--http-port") or free_loopback_port()
    command = [sys.executable, "-m", module, "agent", "--data-dir", str(data_dir)]
    command += ["--kafka-port", str(kafka_port), "--http-port", str(http_port)]
    doors = _door_ports(extra_args)
    command += _door_arguments(doors, extra_args)
    if "--processes" not in extra_args:
        command += ["--processes", "1"]  # one process, whatever the machine's cores
    log_path = log_path or data_dir.parent / f"agent-{kafka_port}.log"
    agent = _popen(command + list(extra_args), log_path, env, cwd, kafka_port, http_port, data_dir)
    _set_door_ports(agent, doors)
    _wait_until_listening(agent, timeout_s)
    return agent


def start_agent_processes(
    data_dir: Path,
    count: int,
    *extra_args: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> AgentProcess:
    """Start `python -m streamhouse agent --processes COUNT` with every Kafka port picked by its
    process (--kafka-port 0) and the supervisor's HTTP on a free port; return once /ready
    answers 200, with `kafka_ports` (and `port`: process 0's) read from /health. Raises
    AgentProcessFailed as `start_agent_process` does."""
    data_dir.mkdir(parents=True, exist_ok=True)
    http_port = free_loopback_port()
    command = [sys.executable, "-m", "streamhouse", "agent", "--data-dir", str(data_dir)]
    command += ["--processes", str(count), "--kafka-port", "0", "--http-port", str(http_port)]
    doors = _door_ports(extra_args)
    command += _door_arguments(doors, extra_args)
    log_path = log_path or data_dir.parent / f"agents-{http_port}.log"
    agent = _popen(command + list(extra_args), log_path, env, None, 0, http_port, data_dir)
    _set_door_ports(agent, doors)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        agent.check_alive()
        if _ready(agent):
            agent.kafka_ports = [int(view["kafka"].rsplit(":", 1)[1]) for view in agent.health()]
            agent.port = agent.kafka_ports[0]
            return agent
        time.sleep(START_POLL_S)
    agent.kill()
    raise AgentProcessFailed(
        f"agent processes not ready within {timeout_s} s; last lines of "
        f"{agent.log_path}:\n{agent.log_tail()}"
    )


def _popen(
    command: list[str],
    log_path: Path,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    kafka_port: int,
    http_port: int,
    data_dir: Path,
) -> AgentProcess:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    _STARTED.append(process)
    return AgentProcess(process, kafka_port, http_port, data_dir, log_path)


def _ready(agent: AgentProcess) -> bool:
    try:
        with urllib.request.urlopen(agent.http_base + "/ready", timeout=CONNECT_TIMEOUT_S):
            return True
    except (OSError, urllib.error.HTTPError):
        return False


# The doors beside Kafka and HTTP: each on a free port of its own unless the test names one
# (their defaults, 8081, 50051 and 8082, would collide between agents run side by side)
DOOR_FLAGS = {
    "--schema-registry-port": "registry_port",
    "--grpc-port": "grpc_port",
    "--rest-proxy-port": "rest_port",
}


def _door_ports(args: tuple[str, ...]) -> dict[str, int]:
    return {flag: _named_port(args, flag) or free_loopback_port() for flag in DOOR_FLAGS}


def _door_arguments(doors: dict[str, int], args: tuple[str, ...]) -> list[str]:
    return [part for flag, port in doors.items() if flag not in args for part in (flag, str(port))]


def _set_door_ports(agent: AgentProcess, doors: dict[str, int]) -> None:
    for flag, attribute in DOOR_FLAGS.items():
        setattr(agent, attribute, doors[flag])


def _named_port(args: tuple[str, ...], flag: str) -> int | None:
    """The port `args` set with `flag` (the last one, as the CLI takes it), or None."""
    named = [int(args[i + 1]) for i, arg in enumerate(args[:-1]) if arg == flag]
    if not named:
        return None
    if named[-1] == 0:
        raise ValueError(f"{flag} 0 hides the port from the starter; leave it out for a free one")
    return named[-1]


def _wait_until_listening(agent: AgentProcess, timeout_s: float) -> None:
    # The other doors open after the Kafka listener: all answering means started.
    doors = (agent.port, agent.http_port, agent.registry_port, agent.grpc_port, agent.rest_port)
    ports = [port for port in doors if port > 0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        agent.check_alive()
        if all(_accepts(port) for port in ports):
            return
        time.sleep(START_POLL_S)
    agent.kill()
    raise AgentProcessFailed(
        f"agent did not listen on {ports} within {timeout_s} s; last lines of "
        f"{agent.log_path}:\n{agent.log_tail()}"
    )


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True
