"""Loopback ports for test servers, picked where nothing else will take them meanwhile.

A port the OS hands out for port 0 comes from the ephemeral range, the same range every outgoing
connection (a client, a database driver, boto3) takes its local port from, so it can be taken
between the pick and the server's bind. Ports are therefore drawn below the ephemeral range,
never twice in one process, and checked free by binding them once. Under pytest-xdist each
worker draws from its own slice of that range, so a port one worker released (an agent between
a stop and its restart on the same ports) is never handed to another.
"""

from __future__ import annotations

import os
import random
import socket
import threading

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
EPHEMERAL_RANGE_DEFAULT = (32768, 60999)  # Linux's default
PICKED_PORTS_MIN = 10_000  # the lowest port handed out; below are well-known services
PICK_ATTEMPTS_MAX = 200

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()
_random = random.Random()


def free_loopback_port() -> int:
    """A loopback port free a moment ago, outside the ephemeral range when there is room."""
    low, high = worker_port_slice(_ephemeral_range()[0])
    if high - low < PICK_ATTEMPTS_MAX:  # no room below the ephemeral range: let the OS pick
        return _os_picked_port()
    for _ in range(PICK_ATTEMPTS_MAX):
        port = _random.randrange(low, high)
        with _handed_out_lock:
            if port in _handed_out:
                continue
            if _bindable(port):
                _handed_out.add(port)
                return port
    return _os_picked_port()


def worker_port_slice(ephemeral_low: int) -> tuple[int, int]:
    """[low, high): this test worker's share of the ports between PICKED_PORTS_MIN and
    `ephemeral_low`; the whole of it outside pytest-xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return PICKED_PORTS_MIN, ephemeral_low
    index = int(worker[2:])
    assert 0 <= index < count, f"xdist worker {worker} of {count}"
    span = max(0, ephemeral_low - PICKED_PORTS_MIN) // count
    low = PICKED_PORTS_MIN + index * span
    return low, low + span


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open(EPHEMERAL_RANGE_FILE) as ranges:
            low, high = (int(part) for part in ranges.read().split())
            return low, high
    except (OSError, ValueError):
        return EPHEMERAL_RANGE_DEFAULT


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _os_picked_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
