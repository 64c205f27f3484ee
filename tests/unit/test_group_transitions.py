"""The group state table: it allows exactly the moves Kafka's classic coordinator allows
(GroupMetadata's valid previous states), and a move outside it is our bug, said loudly."""

from __future__ import annotations

import pytest

from streamhouse.log.group_state import TRANSITIONS, Group, GroupEvent, GroupState

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

# Kafka: which states each state may be entered from (Dead may be entered from any state in
# Kafka; we delete only empty groups, so only from Empty).
KAFKA_PREVIOUS_STATES = {
    PREPARING: {EMPTY, PREPARING, COMPLETING, STABLE},
    COMPLETING: {PREPARING},
    STABLE: {COMPLETING},
    EMPTY: {PREPARING},
    DEAD: {EMPTY},
}


def test_the_table_allows_what_kafka_allows() -> None:
    entered_from: dict[GroupState, set[GroupState]] = {state: set() for state in GroupState}
    for state, moves in TRANSITIONS.items():
        for following in moves.values():
            entered_from[following].add(state)
    assert entered_from == KAFKA_PREVIOUS_STATES


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(GroupState)


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (state, event)
        for state in GroupState
        for event in GroupEvent
        if event not in TRANSITIONS[state]
    ],
)
def test_a_move_outside_the_table_is_an_assertion(state: GroupState, event: GroupEvent) -> None:
    group = Group("g", state=state)
    with pytest.raises(AssertionError, match=f"{event.name}.*not allowed in state {state.value}"):
        group._move(event)
    assert group.state is state


def test_a_move_in_the_table_changes_the_state() -> None:
    group = Group("g")
    group._move(GroupEvent.REBALANCE)
    group._move(GroupEvent.JOINED)
    group._move(GroupEvent.ASSIGNED)
    assert group.state is STABLE
