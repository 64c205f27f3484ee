"""The agents' log lines during a simulated run, kept for the reproduction file.

Records of the `streamhouse.*` loggers (INFO and above, with tracebacks) are
stamped with virtual time and the virtual host that logged them, as trace
lines are; only the last `lines_max` are kept. They are not part of the trace
and its digest: logging must never change what a run does.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sim.network import current_host

LOG_LINES_MAX = 5_000
LOGGER = "streamhouse"


class LogLines(logging.Handler):
    """Collects `t=<virtual s> <host> <LEVEL> <logger>: <message>` lines (and tracebacks)."""

    def __init__(self, now_ns: Callable[[], int], lines_max: int = LOG_LINES_MAX) -> None:
        super().__init__(logging.INFO)
        self._now_ns = now_ns
        self.lines: deque[str] = deque(maxlen=lines_max)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        micros = self._now_ns() // 1_000
        stamp = f"t={micros // 1_000_000}.{micros % 1_000_000:06d} {current_host()}"
        self.lines.extend(f"{stamp} {line}" for line in self.format(record).splitlines())


@contextmanager
def captured_logs(now_ns: Callable[[], int]) -> Iterator[LogLines]:
    """Keep the `streamhouse.*` log lines of a run (they do not reach other handlers
    meanwhile: a sweep's output stays the summary)."""
    logger = logging.getLogger(LOGGER)
    level, propagate = logger.level, logger.propagate
    handler = LogLines(now_ns)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
