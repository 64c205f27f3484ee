"""The `acked_durable` and `acked_leader` checkers: acknowledged records are not lost (acks=1
only where the model allows, and detectably)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sim.checkers.index import (
    Content,
    HistoryIndex,
    Violation,
    fault_covers,
    index_history,
    place_of,
    show,
)
from sim.history import (
    ACKS_ALL,
    ACKS_LEADER,
    FAULT_DISK_LOSS,
    FAULT_LEASE_FENCED,
    Event,
    History,
    ProduceAcked,
    ProduceAttempt,
)


@dataclass(frozen=True)
class Loss:
    """Evidence that an acked record is gone from its offset."""

    why: str
    event: Event
    at_us: int
    leader_epoch: int | None


def _loss_evidence(index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked) -> Loss | None:
    """The first observation proving the acked record is no longer at its offset."""
    tp = (attempt.topic, attempt.partition)
    mine: Content = (None, attempt.key, attempt.value)
    for sighting in index.sightings[tp].get(ack.offset, []):
        if sighting.content == mine:
            continue
        if sighting.leader_epoch is not None and ack.leader_epoch is not None:
            older = sighting.leader_epoch < ack.leader_epoch
        else:
            # Without epochs, a sighting is from an older log when a truncation lies between
            # it and the ack (the attempt may have been retried across that truncation).
            older = sighting.at_us < ack.at_us and index.truncation_between(
                *tp, sighting.at_us, ack.at_us
            )
        if not older:
            why = f"{place_of(*tp, ack.offset)} holds {show(sighting.content)}"
            return Loss(why, sighting.event, sighting.at_us, sighting.leader_epoch)
    fetch = index.marks.first_at_or_below(tp, ack.offset, ack.at_us, ack.leader_epoch)
    if fetch is None:
        return None
    why = (
        f"{fetch.client} fetched at {fetch.requested_us}us (after the ack) and was told "
        f"high watermark {fetch.high_watermark} (truncated, or a deposed leader answered)"
    )
    return Loss(why, fetch, fetch.at_us, fetch.leader_epoch)


def _leader_loss_excuse(
    index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked, loss: Loss
) -> str | None:
    """None when an acks=1 loss is allowed by the model, else why it is not."""
    allowed = False
    for fault in index.faults:
        if fault.kind not in (FAULT_DISK_LOSS, FAULT_LEASE_FENCED) or fault.at_us > loss.at_us:
            continue
        if not fault_covers(fault, attempt.topic, attempt.partition):
            continue
        if ack.agent is not None and fault.agent != ack.agent:
            continue
        if fault.kind == FAULT_DISK_LOSS and fault.at_us < attempt.at_us:
            continue
        if (
            fault.kind == FAULT_LEASE_FENCED
            and fault.epoch is not None
            and ack.leader_epoch is not None
            and ack.leader_epoch > fault.epoch
        ):
            continue
        allowed = True
        break
    agent = ack.agent or "its agent"
    if not allowed:
        return f"no disk loss or fenced lease on {agent} explains it"
    if (
        ack.leader_epoch is not None
        and loss.leader_epoch is not None
        and loss.leader_epoch <= ack.leader_epoch
    ):
        return (
            f"the loss shows no leader-epoch change (acked in epoch {ack.leader_epoch}, "
            f"seen in epoch {loss.leader_epoch}): clients cannot detect it"
        )
    return None


def _acked(index: HistoryIndex, acks: int) -> Iterable[tuple[ProduceAttempt, ProduceAcked]]:
    for op, ack in index.acks.items():
        attempt = index.attempts.get(op)
        if attempt is not None and attempt.acks == acks and ack.offset >= 0:
            yield attempt, ack


def describe_ack(attempt: ProduceAttempt, ack: ProduceAcked) -> str:
    mode = "acks=all" if attempt.acks == ACKS_ALL else f"acks={attempt.acks}"
    epoch = "" if ack.leader_epoch is None else f" epoch {ack.leader_epoch}"
    agent = "" if ack.agent is None else f" by {ack.agent}"
    return (
        f"{mode} record op {attempt.op} ({show((None, attempt.key, attempt.value))}) acked "
        f"at {place_of(attempt.topic, attempt.partition, ack.offset)}{epoch}{agent} "
        f"(t={ack.at_us}us)"
    )


def check_acked_durable(history: History) -> list[Violation]:
    """acks=all records are never lost."""
    return _lost_acks(history, ACKS_ALL, "acked_durable")


def check_acked_leader(history: History) -> list[Violation]:
    """acks=1 records are lost only after a disk loss or fenced lease, visibly (epoch change)."""
    return _lost_acks(history, ACKS_LEADER, "acked_leader")


def _lost_acks(history: History, acks: int, checker: str) -> list[Violation]:
    index = index_history(history)
    found: list[Violation] = []
    for attempt, ack in _acked(index, acks):
        loss = _loss_evidence(index, attempt, ack)
        why = None if loss is None else unexcused(index, attempt, ack, loss)
        if loss is not None and why is not None:
            message = f"{describe_ack(attempt, ack)} was lost: {why}"
            found.append(Violation(checker, message, (attempt, ack, loss.event)))
    return found


def unexcused(
    index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked, loss: Loss
) -> str | None:
    """Why losing this acked record breaks a promise, or None if its ack mode allows it."""
    if attempt.acks != ACKS_LEADER:
        return loss.why
    refusal = _leader_loss_excuse(index, attempt, ack, loss)
    return None if refusal is None else f"{loss.why}; {refusal}"


# -- one value per offset --------------------------------------------------------
