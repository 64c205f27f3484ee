"""`streamctl transactions`: list and describe transactions, and abort a hanging one.

Like `streamctl cluster` it speaks Kafka to the agents directly: ListTransactions is asked of
every agent (each lists the transactions of the coordinator slots it holds), DescribeTransactions
of the transactional id's coordinator (FindCoordinator), and `abort` sends WriteTxnMarkers
(an ABORT marker) to the partition's leader, as Kafka's kafka-transactions.sh does for a
transaction whose coordinator no longer knows it (a hanging transaction).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamhouse.cli.agent_client import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TIMEOUT_S,
    Bootstrap,
    CommandError,
    Output,
    OutputFormat,
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
        request = {"state_filters": states, "producer_id_filters": producer_ids}
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
            "timeout ms": int(state.transaction_timeout),
            "start ms": int(state.transaction_start_time),
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

    def abort(
        self, topic: str, partition: int, producer_id: int, epoch: int, coordinator_epoch: int
    ) -> None:
        leader_node = self.leaders().get((topic, partition))
        leader = self.brokers().get(leader_node) if leader_node is not None else None
        if leader is None:
            raise CommandError(f"partition {topic}-{partition} does not exist or has no leader")
        marker = {
            "producer_id": producer_id,
            "producer_epoch": epoch,
            "transaction_result": False,
            "coordinator_epoch": coordinator_epoch,
            "topics": [{"name": topic, "partition_indexes": [partition]}],
        }
        with self._client(leader, f"the leader of {topic}-{partition}") as client:
            answer = client.call(ApiKey.WRITE_TXN_MARKERS, {"markers": [marker]})
        for result in answer.markers:
            for topic_result in result.topics:
                for part in topic_result.partitions:
                    _check(part.error_code, f"writing the abort marker into {topic}-{partition}")


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
    output: OutputFormat = Output.TABLE,
) -> None:
    """List every transactional id of the cluster with its producer id, state and coordinator."""

    def work(probe: TransactionProbe) -> None:
        show_rows(probe.list_all(state or [], producer_id or []), LIST_COLUMNS, output)

    run_command(TransactionProbe, work, bootstrap, timeout_s)


@transactions.command("describe")
def describe_transaction(
    transactional_id: TransactionalId,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
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

    run_command(TransactionProbe, work, bootstrap, timeout_s)


@transactions.command("abort")
def abort_transaction(
    topic: Annotated[str, typer.Option("--topic", help="The hanging transaction's topic.")],
    partition: Annotated[int, typer.Option("--partition", help="Its partition.")],
    producer_id: Annotated[int, typer.Option("--producer-id", help="The producer id.")],
    producer_epoch: Annotated[int, typer.Option("--producer-epoch", help="The producer epoch.")],
    coordinator_epoch: Annotated[
        int, typer.Option("--coordinator-epoch", help="The coordinator epoch of the marker.")
    ] = 0,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    timeout_s: TimeoutS = DEFAULT_TIMEOUT_S,
) -> None:
    """Abort a hanging transaction in one partition: write an ABORT marker for the producer
    there (its leader refuses an epoch older than the producer's). For a transaction whose
    coordinator still knows it, let the coordinator's timeout abort it instead."""

    def work(probe: TransactionProbe) -> None:
        probe.abort(topic, partition, producer_id, producer_epoch, coordinator_epoch)
        say(f"aborted producer {producer_id} epoch {producer_epoch} in {topic}-{partition}")

    run_command(TransactionProbe, work, bootstrap, timeout_s)
