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
    FAULT_METADATA_WIPE,
    Event,
    FaultInjected,
    FetchObserved,
    History,
    ProduceAcked,
    ProduceAttempt,
)


@dataclass(frozen=True)
class Loss:
    """Evidence that an acked record is gone from its offset, seen in leader epoch
    `leader_epoch` -- exactly, or (`exact` False) that epoch or a later one."""

    why: str
    event: Event
    at_us: int
    leader_epoch: int | None
    exact: bool = True


def _loss_evidence(index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked) -> list[Loss]:
    """Every observation proving the acked record is no longer at its offset, in time
    order: a read of other content there (not from an older log), a high watermark at or
    below it told after the ack (not by a leader of an older epoch), a final scan ending
    below it."""
    tp = (attempt.topic, attempt.partition)
    mine: Content = (None, attempt.key, attempt.value)
    epoch = index.ack_epochs.get(attempt.op)
    losses: list[Loss] = []
    for sighting in index.sightings[tp].get(ack.offset, []):
        if sighting.content == mine or not isinstance(sighting.event, FetchObserved):
            continue  # another ack there is not a read: if it is lost, it is judged itself
        if sighting.leader_epoch is not None and epoch is not None:
            older = sighting.leader_epoch < epoch
        else:
            # Without epochs, a sighting is from an older log when a truncation lies between
            # it and the ack (the attempt may have been retried across that truncation).
            older = sighting.at_us < ack.at_us and index.truncation_between(
                *tp, sighting.at_us, ack.at_us
            )
        if not older:
            why = f"{place_of(*tp, ack.offset)} holds {show(sighting.content)}"
            losses.append(Loss(why, sighting.event, sighting.at_us, sighting.leader_epoch))
    for fetch in index.marks.at_or_below(tp, ack.offset, ack.at_us, epoch):
        why = (
            f"{fetch.client} fetched at {fetch.requested_us}us (after the ack) and was told "
            f"high watermark {fetch.high_watermark} (truncated, or a deposed leader answered)"
        )
        exact = fetch.leader_epoch is not None
        losses.append(Loss(why, fetch, fetch.at_us, index.answer_epoch(fetch), exact))
    for scan in index.scans:
        after = (scan.topic, scan.partition) == tp and scan.requested_us > ack.at_us
        if after and scan.start_offset <= ack.offset and scan.end_offset <= ack.offset:
            why = f"{scan.client} found the log ending at {scan.end_offset}"
            losses.append(Loss(why, scan, scan.at_us, scan.leader_epoch))
    return sorted(losses, key=lambda loss: loss.at_us)


def _leader_loss_excuse(
    index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked, losses: list[Loss]
) -> str | None:
    """None when an acks=1 loss is allowed by the model, else why it is not: a disk loss or
    fenced lease of the acking agent caused it, and it is seen in a later leader epoch than
    the ack's, so clients can detect it (`_undetectable`)."""
    epoch = index.ack_epochs.get(attempt.op)
    if not any(_causes(fault, attempt, ack, epoch, losses[0]) for fault in index.faults):
        agent = ack.agent or "its agent"
        return f"no disk loss or fenced lease on {agent} (nor a metadata wipe) explains it"
    return _undetectable(index, attempt, losses)


def _undetectable(index: HistoryIndex, attempt: ProduceAttempt, losses: list[Loss]) -> str | None:
    """Why the loss is not shown to follow a change of leader epoch, or None. The first
    evidence (in time) that settles it decides: one in a later epoch than the ack's excuses,
    one exactly in the ack's epoch or an earlier one does not; evidence known only to be in
    some epoch or later, at or below the ack's, settles nothing. If nobody read the record
    back before it was lost, its ack's epoch is at least the one its agent was seen holding
    (`ack_epoch_floor`): evidence exactly at or below that does not excuse, and if nothing
    settles it, evidence placed in some epoch and the disk loss or fenced lease must do.
    Evidence placed in no epoch at all never excuses."""
    epoch = index.ack_epochs.get(attempt.op)
    floor = index.ack_epoch_floor(attempt.op) if epoch is None else None
    for loss in losses:
        seen = loss.leader_epoch
        if seen is None:
            continue
        if epoch is not None and seen > epoch:
            return None
        below = epoch if epoch is not None else floor
        if loss.exact and below is not None and seen <= below:
            acked = f"epoch {epoch}" if epoch is not None else f"epoch {floor} or later"
            return (
                f"the loss shows no leader-epoch change (acked in {acked}, "
                f"seen in epoch {seen}): clients cannot detect it"
            )
    if not any(loss.leader_epoch is not None for loss in losses):
        return "the loss was seen in an unknown leader epoch: clients cannot tell"
    if epoch is not None:
        return f"no evidence places the loss in a later leader epoch than {epoch}"
    return None


def _causes(
    fault: FaultInjected,
    attempt: ProduceAttempt,
    ack: ProduceAcked,
    epoch: int | None,
    loss: Loss,
) -> bool:
    """Whether `fault` may have taken the acked record: a disk loss of the acking agent or a
    metadata wipe (every agent's data not yet in an object) after the attempt began, or a
    fenced lease of that agent of an epoch not below the ack's, either before the loss was
    seen."""
    kinds = (FAULT_DISK_LOSS, FAULT_LEASE_FENCED, FAULT_METADATA_WIPE)
    if fault.kind not in kinds or fault.at_us > loss.at_us:
        return False
    if not fault_covers(fault, attempt.topic, attempt.partition):
        return False
    if ack.agent is not None and fault.agent not in (ack.agent, "*"):
        return False
    if fault.kind in (FAULT_DISK_LOSS, FAULT_METADATA_WIPE):
        return fault.at_us >= attempt.at_us
    return fault.epoch is None or epoch is None or epoch <= fault.epoch


def _acked(index: HistoryIndex, acks: int) -> Iterable[tuple[ProduceAttempt, ProduceAcked]]:
    for op, ack in index.acks.items():
        attempt = index.attempts.get(op)
        if attempt is not None and attempt.acks == acks and ack.offset >= 0:
            yield attempt, ack


def describe_ack(index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked) -> str:
    mode = "acks=all" if attempt.acks == ACKS_ALL else f"acks={attempt.acks}"
    known = index.ack_epochs.get(attempt.op)
    epoch = "" if known is None else f" epoch {known}"
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
        losses = _loss_evidence(index, attempt, ack)
        why = unexcused(index, attempt, ack, losses) if losses else None
        if why is not None:
            message = f"{describe_ack(index, attempt, ack)} was lost: {why}"
            found.append(Violation(checker, message, (attempt, ack, losses[0].event)))
    return found


def unexcused(
    index: HistoryIndex, attempt: ProduceAttempt, ack: ProduceAcked, losses: list[Loss]
) -> str | None:
    """Why losing this acked record (`losses`: the evidence, in time order) breaks a
    promise, or None if its ack mode allows it, or the object holding it was damaged (by the
    simulator, on purpose) before the loss was seen."""
    if index.damage_at(attempt.topic, attempt.partition, ack.offset, losses[0].at_us):
        return None
    if attempt.acks != ACKS_LEADER:
        return losses[0].why
    refusal = _leader_loss_excuse(index, attempt, ack, losses)
    return None if refusal is None else f"{losses[0].why}; {refusal}"


# -- one value per offset --------------------------------------------------------
