"""`streamctl transactions`: list and describe transactions, and abort a hanging one.

Like `streamctl cluster` it speaks Kafka to the agents directly: ListTransactions is asked of
every agent (each lists the transactions of the coordinator slots it holds), DescribeTransactions
of the transactional id's coordinator (FindCoordinator), and `abort` sends WriteTxnMarkers
(an ABORT marker) to the partition's leader, as Kafka's kafka-transactions.sh does for a
transaction whose coordinator no longer knows it (a hanging transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from streamhouse.cli.agent_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TIMEOUT_S,
    Bootstrap,
    CaFile,
    CommandError,
    Connection,
    Key,
    Mechanism,
    Output,
    OutputFormat,
    SaslMechanism,
    Secret,
    TimeoutS,
    print_json,
    run_command,
    say,
    show_rows,
)
from streamhouse.cli.cluster import Broker, ClusterProbe
from streamhouse.errors import ErrorCode
from streamhouse.kafka.apis import ApiKey

TRANSACTION_KEY_TYPE = 1  # FindCoordinator's key type of a transactional id
LIST_COLUMNS = ("transactional id", "producer id", "state", "coordinator")
DESCRIBE_COLUMNS = ("field", "value")
EMPTY_STATE = "Empty"
_EVERY_TRANSACTION: dict[str, Any] = {"state_filters": [], "producer_id_filters": []}

transactions = typer.Typer(
    help="Inspect transactions and abort hanging ones on a running cluster (over Kafka).",
    no_args_is_help=True,
)

TransactionalId = Annotated[
    str, typer.Argument(metavar="TRANSACTIONAL_ID", help="The producer's transactional.id.")
]


class TransactionProbe(ClusterProbe):
    """The transaction calls the commands make, failures as CommandError."""

    def list_all(self, states: list[str], producer_ids: list[int]) -> list[dict[str, Any]]:
        request = {
            **_EVERY_TRANSACTION,
            "state_filters": states,
            "producer_id_filters": producer_ids,
        }
        rows = []
        for broker in self.brokers().values():
            with self._client(broker, f"agent node {broker.node_id}") as client:
                answer = client.call(ApiKey.LIST_TRANSACTIONS, request)
            _check(answer.error_code, f"listing transactions at {broker.address}")
            rows += [
                {
                    "transactional id": state.transactional_id,
                    "producer id": int(state.producer_id),
                    "state": state.transaction_state,
                    "coordinator": broker.address,
                }
                for state in answer.transaction_states
            ]
        return sorted(rows, key=lambda row: str(row["transactional id"]))

    def describe(self, transactional_id: str) -> dict[str, Any]:
        coordinator = self.coordinator(transactional_id)
        with self._client(coordinator, "the transaction's coordinator") as client:
            listed = client.call(ApiKey.LIST_TRANSACTIONS, _EVERY_TRANSACTION)
            states = {t.transactional_id: t for t in listed.transaction_states}
            known = states.get(transactional_id)
            if known is None:
                raise CommandError(
                    f"transactional id {transactional_id!r} is unknown (TRANSACTIONAL_ID_NOT_FOUND)"
                )
            if known.transaction_state == EMPTY_STATE:
                # no transaction began: its start time is -1, which kio cannot read as a time
                return _empty(transactional_id, int(known.producer_id), coordinator)
            answer = client.call(
                ApiKey.DESCRIBE_TRANSACTIONS, {"transactional_ids": [transactional_id]}
            )
        (state,) = answer.transaction_states
        _check(state.error_code, f"describing transaction {transactional_id!r}")
        return {
            "transactional id": transactional_id,
            "state": state.transaction_state,
            "producer id": int(state.producer_id),
            "producer epoch": int(state.producer_epoch),
            "timeout ms": int(state.transaction_timeout.total_seconds() * 1000),
            "start ms": int(state.transaction_start_time.timestamp() * 1000),
            "partitions": sorted(f"{t.topic}-{p}" for t in state.topics for p in t.partitions),
            "coordinator": coordinator.address,
        }

    def coordinator(self, transactional_id: str) -> Broker:
        request = {  # v0-v3 name one key, later versions a list: the version keeps its own
            "key": transactional_id,
            "key_type": TRANSACTION_KEY_TYPE,
            "coordinator_keys": [transactional_id],
        }
        with self._client(self._bootstrap, "the agent named by --bootstrap") as client:
            answer = client.call(ApiKey.FIND_COORDINATOR, request)
        found = answer.coordinators[0] if getattr(answer, "coordinators", None) else answer
        _check(found.error_code, f"finding the coordinator of {transactional_id!r}")
        return Broker(int(found.node_id), found.host, int(found.port))

    def abort(self, topic: str, partition: int, producer: Producer, coordinator_epoch: int) -> None:
        """Write an ABORT marker for `producer` into the partition, at its leader."""
        marker = {
            "producer_id": producer.producer_id,
            "producer_epoch": producer.producer_epoch,
            "transaction_result": False,
            "coordinator_epoch": coordinator_epoch,
            "topics": [{"name": topic, "partition_indexes": [partition]}],
        }
        with self._client(
            self._leader(topic, partition), f"the leader of {topic}-{partition}"
        ) as client:
            answer = client.call(ApiKey.WRITE_TXN_MARKERS, {"markers": [marker]})
        for result in answer.markers:
            for topic_result in result.topics:
                for part in topic_result.partitions:
                    _check(part.error_code, f"writing the abort marker into {topic}-{partition}")

    def producer_at(self, topic: str, partition: int, start_offset: int) -> Producer:
        """The producer whose open transaction in the partition began at `start_offset`, as
        its leader's DescribeProducers says (how kafka-transactions.sh finds it)."""
        request = {"topics": [{"name": topic, "partition_indexes": [partition]}]}
        with self._client(
            self._leader(topic, partition), f"the leader of {topic}-{partition}"
        ) as client:
            answer = client.call(ApiKey.DESCRIBE_PRODUCERS, request)
        (described,) = [p for t in answer.topics for p in t.partitions]
        _check(described.error_code, f"describing the producers of {topic}-{partition}")
        for active in described.active_producers:
            if int(active.current_txn_start_offset) == start_offset:
                return Producer(int(active.producer_id), int(active.producer_epoch))
        raise CommandError(
            f"no producer of {topic}-{partition} has an open transaction starting at offset "
            f"{start_offset} (`streamctl` cannot find a hanging transaction there)"
        )

    def _leader(self, topic: str, partition: int) -> Broker:
        leader_node = self.leaders().get((topic, partition))
        leader = self.brokers().get(leader_node) if leader_node is not None else None
        if leader is None:
            raise CommandError(f"partition {topic}-{partition} does not exist or has no leader")
        return leader


@dataclass(frozen=True)
class Producer:
    """A producer id and epoch, whose transaction a marker ends."""

    producer_id: int
    producer_epoch: int


def _empty(transactional_id: str, producer_id: int, coordinator: Broker) -> dict[str, Any]:
    return {
        "transactional id": transactional_id,
        "state": EMPTY_STATE,
        "producer id": producer_id,
        "producer epoch": None,
        "timeout ms": None,
        "start ms": None,
        "partitions": [],
        "coordinator": coordinator.address,
    }


def _check(code: int, what: str) -> None:
    if code != ErrorCode.NONE:
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        raise CommandError(f"{what} failed: {name}")


@transactions.command("list")
def list_transactions(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="Only transactions in this state (Ongoing, …); repeatable."),
    ] = None,
    producer_id: Annotated[
        list[int] | None,
        typer.Option("--producer-id", help="Only this producer id's transactions; repeatable."),
    ] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """List every transactional id of the cluster with its producer id, state and coordinator."""

    def work(probe: TransactionProbe) -> None:
        show_rows(probe.list_all(state or [], producer_id or []), LIST_COLUMNS, output)

    run_command(
        TransactionProbe, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file)
    )


@transactions.command("describe")
def describe_transaction(
    transactional_id: TransactionalId,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
    output: OutputFormat = Output.TABLE,
) -> None:
    """Show a transaction's state, producer id and epoch, timeout, start and partitions."""

    def work(probe: TransactionProbe) -> None:
        described = probe.describe(transactional_id)
        if output is Output.JSON:
            print_json(described)
            return
        rows = [{"field": key, "value": value} for key, value in described.items()]
        show_rows(rows, DESCRIBE_COLUMNS, output, f"transaction {transactional_id}")

    run_command(
        TransactionProbe, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file)
    )


@transactions.command("abort")
def abort_transaction(
    topic: Annotated[str, typer.Option("--topic", help="The hanging transaction's topic.")],
    partition: Annotated[int, typer.Option("--partition", help="Its partition.")],
    start_offset: Annotated[
        int | None,
        typer.Option(
            "--start-offset",
            help="Where the hanging transaction began; its producer is looked up "
            "(DescribeProducers). Or name it with --producer-id and --producer-epoch.",
        ),
    ] = None,
    producer_id: Annotated[
        int | None, typer.Option("--producer-id", help="The producer id.")
    ] = None,
    producer_epoch: Annotated[
        int | None, typer.Option("--producer-epoch", help="The producer epoch.")
    ] = None,
    coordinator_epoch: Annotated[
        int, typer.Option("--coordinator-epoch", help="The coordinator epoch of the marker.")
    ] = 0,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
    key: Key = None,
    secret: Secret = None,
    mechanism: Mechanism = SaslMechanism.SCRAM_SHA_512,
    ca_file: CaFile = None,
) -> None:
    """Abort a hanging transaction in one partition, as kafka-transactions.sh does: write an
    ABORT marker for its producer there (the leader refuses an epoch older than the
    producer's). For a transaction its coordinator still knows, its timeout aborts it."""

    def work(probe: TransactionProbe) -> None:
        if start_offset is not None:
            producer = probe.producer_at(topic, partition, start_offset)
        elif producer_id is not None and producer_epoch is not None:
            producer = Producer(producer_id, producer_epoch)
        else:
            raise CommandError(
                "name the transaction: --start-offset, or --producer-id and --producer-epoch"
            )
        probe.abort(topic, partition, producer, coordinator_epoch)
        say(
            f"aborted producer {producer.producer_id} epoch {producer.producer_epoch} "
            f"in {topic}-{partition}"
        )

    run_command(
        TransactionProbe, work, Connection(bootstrap, timeout_s, key, secret, mechanism, ca_file)
    )
