"""The Kafka encoding of the cluster directory (`engine.cluster`): an agent as a broker, a
partition's one replica."""

from __future__ import annotations

from streamhouse.engine.admin import PartitionDescription
from streamhouse.engine.cluster import AgentAddress
from streamhouse.server.kafka_context import Values

NO_RACK = None
LISTENER_NAME = "PLAINTEXT"  # the agent's one Kafka listener


def broker(agent: AgentAddress, id_field: str = "node_id") -> Values:
    """The agent as Metadata lists a broker (DescribeCluster names the id `broker_id`)."""
    return {id_field: agent.node_id, "host": agent.host, "port": agent.port, "rack": NO_RACK}


def partition_metadata(partition: PartitionDescription) -> Values:
    """A partition as Metadata and DescribeTopicPartitions list it: its leader is its only
    replica, always in sync (the object store is the replica)."""
    return {
        "error_code": 0,
        "partition_index": partition.partition,
        "leader_id": partition.leader_node,
        "leader_epoch": partition.leader_epoch,
        "replica_nodes": [partition.leader_node],
        "isr_nodes": [partition.leader_node],
        "offline_replicas": [],
    }
