"""Which gRPC status answers each Kafka error code: the one table the gRPC door refuses by.

A call refused whole is answered with the status of its StreamHouseError's code and the
error's message (which says what to change); codes without an entry are the agent's own
trouble and answer INTERNAL. A refusal of one record or partition inside an answer keeps its
Kafka code in an `Error` message instead (`error_message`).
"""

from __future__ import annotations

from grpc import StatusCode

from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.server.grpc import streamhouse_pb2 as pb

E = ErrorCode
S = StatusCode
UNMAPPED_STATUS = StatusCode.INTERNAL  # a code not in the table: ours to explain, not the caller's

STATUS_OF_ERROR: dict[ErrorCode, StatusCode] = {
    # what is asked for is not there
    E.UNKNOWN_TOPIC_OR_PARTITION: S.NOT_FOUND,
    E.GROUP_ID_NOT_FOUND: S.NOT_FOUND,
    E.RESOURCE_NOT_FOUND: S.NOT_FOUND,
    E.TRANSACTIONAL_ID_NOT_FOUND: S.NOT_FOUND,
    E.LOG_DIR_NOT_FOUND: S.NOT_FOUND,
    E.UNKNOWN_MEMBER_ID: S.NOT_FOUND,
    E.UNKNOWN_PRODUCER_ID: S.NOT_FOUND,
    # it is there already
    E.TOPIC_ALREADY_EXISTS: S.ALREADY_EXISTS,
    E.DUPLICATE_RESOURCE: S.ALREADY_EXISTS,
    # the caller may not
    E.TOPIC_AUTHORIZATION_FAILED: S.PERMISSION_DENIED,
    E.GROUP_AUTHORIZATION_FAILED: S.PERMISSION_DENIED,
    E.CLUSTER_AUTHORIZATION_FAILED: S.PERMISSION_DENIED,
    E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: S.PERMISSION_DENIED,
    E.SASL_AUTHENTICATION_FAILED: S.UNAUTHENTICATED,
    E.UNSUPPORTED_SASL_MECHANISM: S.UNAUTHENTICATED,
    E.ILLEGAL_SASL_STATE: S.UNAUTHENTICATED,
    E.UNACCEPTABLE_CREDENTIAL: S.INVALID_ARGUMENT,
    # the request itself is wrong
    E.CORRUPT_MESSAGE: S.INVALID_ARGUMENT,
    E.INVALID_FETCH_SIZE: S.INVALID_ARGUMENT,
    E.INVALID_TOPIC_EXCEPTION: S.INVALID_ARGUMENT,
    E.INVALID_REQUIRED_ACKS: S.INVALID_ARGUMENT,
    E.INVALID_GROUP_ID: S.INVALID_ARGUMENT,
    E.INVALID_SESSION_TIMEOUT: S.INVALID_ARGUMENT,
    E.INVALID_PARTITIONS: S.INVALID_ARGUMENT,
    E.INVALID_REPLICATION_FACTOR: S.INVALID_ARGUMENT,
    E.INVALID_REPLICA_ASSIGNMENT: S.INVALID_ARGUMENT,
    E.INVALID_CONFIG: S.INVALID_ARGUMENT,
    E.INVALID_REQUEST: S.INVALID_ARGUMENT,
    E.INVALID_RECORD: S.INVALID_ARGUMENT,
    E.INVALID_TRANSACTION_TIMEOUT: S.INVALID_ARGUMENT,
    E.INVALID_PRODUCER_ID_MAPPING: S.INVALID_ARGUMENT,
    E.INCONSISTENT_GROUP_PROTOCOL: S.INVALID_ARGUMENT,
    E.MEMBER_ID_REQUIRED: S.INVALID_ARGUMENT,
    E.POLICY_VIOLATION: S.INVALID_ARGUMENT,
    E.UNSUPPORTED_VERSION: S.UNIMPLEMENTED,
    E.UNSUPPORTED_FOR_MESSAGE_FORMAT: S.UNIMPLEMENTED,
    # too big, too many
    E.MESSAGE_TOO_LARGE: S.RESOURCE_EXHAUSTED,
    E.RECORD_LIST_TOO_LARGE: S.RESOURCE_EXHAUSTED,
    E.OFFSET_METADATA_TOO_LARGE: S.RESOURCE_EXHAUSTED,
    E.GROUP_MAX_SIZE_REACHED: S.RESOURCE_EXHAUSTED,
    E.THROTTLING_QUOTA_EXCEEDED: S.RESOURCE_EXHAUSTED,
    # asked of a state that does not allow it now
    E.OFFSET_OUT_OF_RANGE: S.OUT_OF_RANGE,
    E.ILLEGAL_GENERATION: S.FAILED_PRECONDITION,
    E.REBALANCE_IN_PROGRESS: S.FAILED_PRECONDITION,
    E.NON_EMPTY_GROUP: S.FAILED_PRECONDITION,
    E.GROUP_SUBSCRIBED_TO_TOPIC: S.FAILED_PRECONDITION,
    E.FENCED_INSTANCE_ID: S.FAILED_PRECONDITION,
    E.INVALID_TXN_STATE: S.FAILED_PRECONDITION,
    E.INVALID_PRODUCER_EPOCH: S.FAILED_PRECONDITION,
    E.PRODUCER_FENCED: S.FAILED_PRECONDITION,
    E.TRANSACTION_COORDINATOR_FENCED: S.FAILED_PRECONDITION,
    E.OUT_OF_ORDER_SEQUENCE_NUMBER: S.FAILED_PRECONDITION,
    E.DUPLICATE_SEQUENCE_NUMBER: S.ALREADY_EXISTS,
    E.FENCED_LEADER_EPOCH: S.FAILED_PRECONDITION,
    E.UNKNOWN_LEADER_EPOCH: S.FAILED_PRECONDITION,
    E.ELECTION_NOT_NEEDED: S.FAILED_PRECONDITION,
    E.NO_REASSIGNMENT_IN_PROGRESS: S.FAILED_PRECONDITION,
    E.FETCH_SESSION_ID_NOT_FOUND: S.FAILED_PRECONDITION,
    E.INVALID_FETCH_SESSION_EPOCH: S.FAILED_PRECONDITION,
    E.UNSTABLE_OFFSET_COMMIT: S.UNAVAILABLE,
    E.CONCURRENT_TRANSACTIONS: S.ABORTED,
    E.OPERATION_NOT_ATTEMPTED: S.ABORTED,
    # retry, maybe at another agent
    E.LEADER_NOT_AVAILABLE: S.UNAVAILABLE,
    E.NOT_LEADER_OR_FOLLOWER: S.UNAVAILABLE,
    E.COORDINATOR_LOAD_IN_PROGRESS: S.UNAVAILABLE,
    E.COORDINATOR_NOT_AVAILABLE: S.UNAVAILABLE,
    E.NOT_COORDINATOR: S.UNAVAILABLE,
    E.NOT_ENOUGH_REPLICAS: S.UNAVAILABLE,
    E.NETWORK_EXCEPTION: S.UNAVAILABLE,
    E.KAFKA_STORAGE_ERROR: S.UNAVAILABLE,
    E.REQUEST_TIMED_OUT: S.DEADLINE_EXCEEDED,
    # the agent's own trouble
    E.UNKNOWN_SERVER_ERROR: S.INTERNAL,
}
# NONE is no error; every other code is in the table (tests/unit/test_grpc_status.py)
NOT_AN_ERROR = frozenset({ErrorCode.NONE})


def status_of(code: ErrorCode) -> StatusCode:
    """The gRPC status a call refused with Kafka's `code` answers."""
    assert code is not ErrorCode.NONE, "a refusal needs an error code"
    return STATUS_OF_ERROR.get(code, UNMAPPED_STATUS)


def error_message(error: StreamHouseError) -> pb.Error:
    """A refusal of one item inside an answer, as the proto carries it."""
    return pb.Error(code=error.code.name, kafka_error_code=int(error.code), message=str(error))


def code_message(code: ErrorCode, message: str) -> pb.Error:
    """A refusal given only by its code (a per-partition answer of the group coordinator)."""
    return pb.Error(code=code.name, kafka_error_code=int(code), message=message)


class CallRefused(Exception):
    """A call the door itself refuses (not an engine rule): its status and what to change."""

    def __init__(self, status: StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status
