"""The `history` checker: the history itself is well formed."""

from __future__ import annotations

from sim.checkers.index import Violation, place_of
from sim.history import (
    Event,
    History,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
)


def check_history(history: History) -> list[Violation]:
    """The history is well formed (a broken one is a workload bug, reported as such)."""
    found: list[Violation] = []

    def flag(message: str, *events: Event) -> None:
        found.append(Violation("history", message, events))

    attempts: dict[int, ProduceAttempt] = {}
    contents: dict[tuple[str, int, bytes | None, bytes | None], ProduceAttempt] = {}
    outcomes: dict[int, Event] = {}
    last_us = 0
    for event in history:
        if event.at_us < last_us:
            flag(f"time went backwards: at_us {event.at_us} after {last_us}", event)
        last_us = max(last_us, event.at_us)
        requested_us = getattr(event, "requested_us", None)
        if isinstance(requested_us, int) and requested_us > event.at_us:
            flag(f"answered at {event.at_us} before requested at {requested_us}", event)
        if isinstance(event, ProduceAttempt):
            if event.op in attempts:
                flag(f"op {event.op} attempted twice", attempts[event.op], event)
            attempts.setdefault(event.op, event)
            key = (event.topic, event.partition, event.key, event.value)
            if key in contents:
                flag(
                    f"ops {contents[key].op} and {event.op} write the same record to "
                    f"{place_of(event.topic, event.partition)}: reads cannot name their writer",
                    contents[key],
                    event,
                )
            contents.setdefault(key, event)
        elif isinstance(event, ProduceAcked | ProduceFailed):
            if event.op not in attempts:
                flag(f"outcome of op {event.op}, which was never attempted", event)
            if event.op in outcomes:
                flag(f"op {event.op} has two outcomes", outcomes[event.op], event)
            outcomes.setdefault(event.op, event)
            if isinstance(event, ProduceAcked) and event.offset < 0:
                flag(f"op {event.op} acked without an offset ({event.offset})", event)
    return found


# -- acknowledged writes -------------------------------------------------------
