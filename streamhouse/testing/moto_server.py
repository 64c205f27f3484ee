"""One moto S3 server subprocess on loopback (`running_moto_server()`), for tests and benchmarks,
with dummy credentials: nothing started here ever signs requests with real ones."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamhouse.testing.server_process import start_http_server, stop_process

# Dummy credentials: tests must never sign requests with real ones.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"


@contextmanager
def running_moto_server(log_dir: Path) -> Iterator[str]:
    """The URL of a running moto server ("http://127.0.0.1:PORT") until the block ends; its
    log goes under `log_dir`. Raises RuntimeError if it does not start."""
    env = {**os.environ, **dummy_credentials(), "AWS_DEFAULT_REGION": "us-east-1"}
    process, endpoint_url = start_http_server("moto", _command, log_dir, env)
    try:
        yield endpoint_url
    finally:
        stop_process(process)


def dummy_credentials() -> dict[str, str]:
    """The environment under which agents (through boto3's usual chain) reach moto."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
    }


def _command(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
