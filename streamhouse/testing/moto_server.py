"""One moto S3 server subprocess on loopback (`running_moto_server()`), for tests and benchmarks,
with dummy credentials: nothing started here ever signs requests with real ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamhouse.testing.network import free_loopback_port

# Dummy credentials: tests must never sign requests with real ones.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 10.0
_START_ATTEMPTS_MAX = 3


@contextmanager
def running_moto_server(log_dir: Path) -> Iterator[str]:
    """The URL of a running moto server ("http://127.0.0.1:PORT") until the block ends; its
    log goes under `log_dir`. Raises RuntimeError if it does not start."""
    process, endpoint_url = _start_with_retries(log_dir)
    try:
        yield endpoint_url
    finally:
        _stop(process)


def dummy_credentials() -> dict[str, str]:
    """The environment under which agents (through boto3's usual chain) reach moto."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
    }


def _start_with_retries(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    # Retried because the free port can be taken between our probe and moto's bind.
    errors: list[str] = []
    for attempt in range(_START_ATTEMPTS_MAX):
        log_path = log_dir / f"moto-{attempt}.log"
        port = free_loopback_port()
        process = _spawn(port, log_path)
        endpoint_url = f"http://127.0.0.1:{port}"
        if _wait_until_serving(process, endpoint_url):
            return process, endpoint_url
        _stop(process)
        errors.append(f"port {port}: {log_path.read_text(errors='replace')[-2000:]}")
    raise RuntimeError("moto server did not start:\n" + "\n".join(errors))


def _spawn(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **dummy_credentials(), "AWS_DEFAULT_REGION": "us-east-1"}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    # Output goes to a file, not a pipe: nobody reads a pipe and a full one would block moto.
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_until_serving(process: subprocess.Popen[bytes], endpoint_url: str) -> bool:
    # No proxies: the server is on loopback and a proxy from the environment must not interfere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with opener.open(endpoint_url, timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
