"""How many examples the heavy property tests draw: the full count under `make test-all`
(STREAMHOUSE_PROPERTY_BUDGET=full), a quarter in `make test`, the inner loop."""

from __future__ import annotations

import os

FULL = os.environ.get("STREAMHOUSE_PROPERTY_BUDGET") == "full"
INNER_LOOP_SHARE = 4
INNER_LOOP_EXAMPLES_MIN = 10


def examples(full_count: int) -> int:
    if FULL:
        return full_count
    return max(INNER_LOOP_EXAMPLES_MIN, full_count // INNER_LOOP_SHARE)
