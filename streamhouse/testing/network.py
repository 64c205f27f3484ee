"""Loopback ports for test servers, picked where nothing else will take them meanwhile.

A port the OS hands out for port 0 comes from the ephemeral range, the same range every outgoing
connection (a client, a database driver, boto3) takes its local port from, so it can be taken
between the pick and the server's bind. Ports are therefore drawn below the ephemeral range,
never twice in one process, and checked free by binding them once.
"""

from __future__ import annotations

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
    low = _ephemeral_range()[0]
    if low - PICKED_PORTS_MIN < PICK_ATTEMPTS_MAX:  # no room below: let the OS pick
        return _os_picked_port()
    for _ in range(PICK_ATTEMPTS_MAX):
        port = _random.randrange(PICKED_PORTS_MIN, low)
        with _handed_out_lock:
            if port in _handed_out:
                continue
            if _bindable(port):
                _handed_out.add(port)
                return port
    return _os_picked_port()


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
