"""The simulation trace: one line per observable event, stamped with virtual time.

Two runs of one seed must produce byte-identical traces; that is the
determinism check. Lines are kept in memory up to `lines_max` (older lines
beyond it are counted, not kept) and may be echoed as they happen.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable

LINES_MAX = 1_000_000


class Trace:
    """Collects `t=<virtual µs> <event> <fields>` lines in event order."""

    def __init__(
        self,
        now_ns: Callable[[], int],
        lines_max: int = LINES_MAX,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self._now_ns = now_ns
        self.lines: deque[str] = deque(maxlen=lines_max)
        self.count = 0
        self._echo = echo

    def record(self, event: str, *fields: object) -> None:
        micros = self._now_ns() // 1_000
        line = " ".join(
            [f"t={micros // 1_000_000}.{micros % 1_000_000:06d}", event, *map(str, fields)]
        )
        self.lines.append(line)
        self.count += 1
        if self._echo is not None:
            self._echo(line)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def digest(self) -> str:
        """A short fingerprint of every kept line."""
        return f"{zlib.crc32(self.text().encode()):08x}"


def fingerprint(data: bytes | None) -> str:
    """Length and CRC32 of some bytes, for trace lines that must reflect content."""
    return "null" if data is None else f"{len(data)}:{zlib.crc32(data):08x}"
