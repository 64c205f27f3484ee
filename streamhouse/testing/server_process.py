"""Test servers as subprocesses on free loopback ports: start one (trying another port when
ours was taken between probe and bind), wait until it answers HTTP, stop it (SIGTERM, then
kill if it hangs)."""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from streamhouse.testing.network import LOOPBACK, free_loopback_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS_MAX = 3
_LOG_TAIL_CHARS = 2000


def start_http_server(
    name: str,
    command: Callable[[int], list[str]],
    log_dir: Path | None,
    env: Mapping[str, str] | None = None,
    probe_path: str = "/",
) -> tuple[subprocess.Popen[bytes], str]:
    """The process and base URL ("http://127.0.0.1:PORT") of `command(port)` once it answers
    HTTP at `probe_path`; its output goes to `log_dir/<name>-<attempt>.log` (or a temporary
    file, gone when closed). RuntimeError with the logs' tails if it never answers."""
    errors: list[str] = []
    for attempt in range(START_ATTEMPTS_MAX):
        port = free_loopback_port()
        base_url = f"http://{LOOPBACK}:{port}"
        with _log_file(log_dir, f"{name}-{attempt}.log") as log:
            # Output goes to a file, not a pipe: nobody reads a pipe and a full one would block.
            process = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT, env=env)
            if _wait_until_serving(process, base_url + probe_path):
                return process, base_url
            stop_process(process)
            log.seek(0)
            errors.append(f"port {port}: {log.read().decode(errors='replace')[-_LOG_TAIL_CHARS:]}")
    raise RuntimeError(f"{name} did not start:\n" + "\n".join(errors))


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _log_file(log_dir: Path | None, file_name: str) -> IO[bytes]:
    if log_dir is None:
        return tempfile.TemporaryFile()
    return (log_dir / file_name).open("w+b")


def _wait_until_serving(process: subprocess.Popen[bytes], url: str) -> bool:
    # No proxies: the server is on loopback and a proxy from the environment must not interfere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with opener.open(url, timeout=1.0):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.05)
    return False
