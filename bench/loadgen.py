"""The C load generator (bench/loadgen.c): compiled once per source version into a cache
directory, run as a child process, its one JSON line returned as a dict."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("loadgen.c")
HEADER = Path("/usr/include/librdkafka/rdkafka_mock.h")
PACKAGE = "librdkafka-dev"
CACHE_DIR = Path(sys.prefix) / "streamhouse-bench"
COMPILE_TIMEOUT_S = 120
APT_TIMEOUT_S = 600
RUN_TIMEOUT_S = 300
SAMPLE_EVERY_S = 0.2
COMPILER_FLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")


class LoadgenFailed(RuntimeError):
    """The load generator could not be built, or a run failed."""


def ensure_librdkafka() -> None:
    """librdkafka's headers, installed with apt-get when this machine allows it (root);
    otherwise one line naming the package, and stop."""
    if HEADER.exists() and shutil.which("gcc"):
        return
    missing = [PACKAGE] + ([] if shutil.which("gcc") else ["gcc"])
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"loadgen: installing {' '.join(missing)} with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=APT_TIMEOUT_S)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing],
            check=True,
            env=env,
            timeout=APT_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
        )
        return
    raise SystemExit(
        f"loadgen needs {' '.join(missing)}; install it first "
        f"(Debian/Ubuntu: sudo apt-get install {' '.join(missing)}; macOS: brew install librdkafka)"
    )


def binary() -> Path:
    """The compiled load generator for the current source, built if it is not cached yet."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(COMPILER_FLAGS).encode()).hexdigest()
    target = CACHE_DIR / f"loadgen-{digest[:16]}"
    if target.exists():
        return target
    ensure_librdkafka()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as scratch:
        built = Path(scratch) / "loadgen"
        command = ["gcc", *COMPILER_FLAGS, "-o", str(built), str(SOURCE), "-lrdkafka"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        if result.returncode != 0:
            raise LoadgenFailed(f"compiling {SOURCE} failed:\n{result.stderr}")
        built.replace(target)  # atomic: a concurrent build leaves one complete binary
    return target


def raise_open_files_limit() -> tuple[int, int]:
    """Lift this process's soft open-file limit to its hard limit (children inherit it: the
    load generator's sockets and the agent's); returns (soft, hard) as now set."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def command(mode: str, target: str | None, topic: str, **options: Any) -> list[str]:
    """The command line of one run: `target` a bootstrap address, or None for the mock."""
    line = [str(binary()), mode, "--topic", topic]
    line += ["--mock"] if target is None else ["--bootstrap", target]
    for name, value in options.items():
        line += [f"--{name.replace('_', '-')}", str(value)]
    return line


def parse(stdout: str, stderr: str, code: int, line: list[str]) -> dict[str, Any]:
    """The JSON a run printed; LoadgenFailed if it printed none (exit 2)."""
    if code == 2 or not stdout.strip():
        raise LoadgenFailed(f"{' '.join(line)} exited {code}: {stderr.strip()}")
    report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    report["complete"] = code == 0  # 1: some records were not delivered or answered
    return report


def run(mode: str, target: str | None, topic: str, **options: Any) -> dict[str, Any]:
    """One run of the load generator, to completion."""
    line = command(mode, target, topic, **options)
    result = subprocess.run(line, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return parse(result.stdout, result.stderr, result.returncode, line)


def run_sampled(
    mode: str, target: str | None, topic: str, sample: Callable[[], None], **options: Any
) -> dict[str, Any]:
    """One run of the load generator, calling `sample()` every SAMPLE_EVERY_S while it runs
    (to read the agent's memory and open files under load)."""
    line = command(mode, target, topic, **options)
    with subprocess.Popen(
        line, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            sample()
            time.sleep(SAMPLE_EVERY_S)
        if process.poll() is None:
            process.kill()
        stdout, stderr = process.communicate()
    return parse(stdout, stderr, process.returncode, line)
