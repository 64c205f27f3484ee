"""Error types of the engine, each carrying a Kafka error code and who is to blame."""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Kafka protocol error codes used by StreamHouse (values from the Kafka protocol)."""

    UNKNOWN_SERVER_ERROR = -1
    NONE = 0
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PARTITION = 3
    INVALID_FETCH_SIZE = 4
    LEADER_NOT_AVAILABLE = 5
    NOT_LEADER_OR_FOLLOWER = 6
    REQUEST_TIMED_OUT = 7
    MESSAGE_TOO_LARGE = 10
    OFFSET_METADATA_TOO_LARGE = 12
    NETWORK_EXCEPTION = 13
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    INVALID_TOPIC_EXCEPTION = 17
    RECORD_LIST_TOO_LARGE = 18
    NOT_ENOUGH_REPLICAS = 19
    INVALID_REQUIRED_ACKS = 21
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    TOPIC_AUTHORIZATION_FAILED = 29
    GROUP_AUTHORIZATION_FAILED = 30
    CLUSTER_AUTHORIZATION_FAILED = 31
    UNSUPPORTED_SASL_MECHANISM = 33
    ILLEGAL_SASL_STATE = 34
    TOPIC_ALREADY_EXISTS = 36
    INVALID_PARTITIONS = 37
    INVALID_REPLICATION_FACTOR = 38
    INVALID_REPLICA_ASSIGNMENT = 39
    UNSUPPORTED_VERSION = 35
    INVALID_CONFIG = 40
    INVALID_REQUEST = 42
    INVALID_RECORD = 87
    UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
    POLICY_VIOLATION = 44
    OUT_OF_ORDER_SEQUENCE_NUMBER = 45
    DUPLICATE_SEQUENCE_NUMBER = 46
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_PRODUCER_ID_MAPPING = 49
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    TRANSACTION_COORDINATOR_FENCED = 52
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
    OPERATION_NOT_ATTEMPTED = 55
    KAFKA_STORAGE_ERROR = 56
    LOG_DIR_NOT_FOUND = 57
    SASL_AUTHENTICATION_FAILED = 58
    UNKNOWN_PRODUCER_ID = 59
    FETCH_SESSION_ID_NOT_FOUND = 70
    INVALID_FETCH_SESSION_EPOCH = 71
    NON_EMPTY_GROUP = 68
    GROUP_ID_NOT_FOUND = 69
    FENCED_LEADER_EPOCH = 74
    UNKNOWN_LEADER_EPOCH = 75
    MEMBER_ID_REQUIRED = 79
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82
    ELECTION_NOT_NEEDED = 84
    NO_REASSIGNMENT_IN_PROGRESS = 85
    GROUP_SUBSCRIBED_TO_TOPIC = 86
    UNSTABLE_OFFSET_COMMIT = 88
    THROTTLING_QUOTA_EXCEEDED = 89
    PRODUCER_FENCED = 90
    RESOURCE_NOT_FOUND = 91
    DUPLICATE_RESOURCE = 92
    UNACCEPTABLE_CREDENTIAL = 93
    TRANSACTIONAL_ID_NOT_FOUND = 105


class Blame(enum.Enum):
    """Whose mistake an error is: the remote side's (a bad request) or ours/our environment's."""

    REMOTE = "remote"
    LOCAL = "local"


class StreamHouseError(Exception):
    """Base of every error the engine raises on purpose; carries a Kafka error code."""

    code: ErrorCode = ErrorCode.KAFKA_STORAGE_ERROR
    blame: Blame = Blame.LOCAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidRecordBatch(StreamHouseError):
    """A record batch failed validation (wrong magic, bad CRC, inconsistent sizes)."""

    code = ErrorCode.CORRUPT_MESSAGE
    blame = Blame.REMOTE


class InvalidRecord(StreamHouseError):
    """Records of a batch break a rule of their topic (Kafka's INVALID_RECORD); the batch is
    not appended. `record_errors` name them: (index in the batch, message)."""

    code = ErrorCode.INVALID_RECORD
    blame = Blame.REMOTE

    def __init__(self, message: str, record_errors: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class MessageTooLarge(StreamHouseError):
    """A batch exceeds the configured maximum size."""

    code = ErrorCode.MESSAGE_TOO_LARGE
    blame = Blame.REMOTE


class RequestTimedOut(StreamHouseError):
    """An acknowledgement did not come within the request's timeout (the records may still
    be written: a producer that retries may duplicate them, as with Kafka)."""

    code = ErrorCode.REQUEST_TIMED_OUT
    blame = Blame.LOCAL


class UnknownTopicOrPartition(StreamHouseError):
    """The topic or partition does not exist."""

    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    blame = Blame.REMOTE


class TopicAlreadyExists(StreamHouseError):
    """A topic of that name exists already."""

    code = ErrorCode.TOPIC_ALREADY_EXISTS
    blame = Blame.REMOTE


class InvalidTopic(StreamHouseError):
    """A topic name Kafka would not accept."""

    code = ErrorCode.INVALID_TOPIC_EXCEPTION
    blame = Blame.REMOTE


class InvalidPartitions(StreamHouseError):
    """A partition count below one (or a decrease) was asked for."""

    code = ErrorCode.INVALID_PARTITIONS
    blame = Blame.REMOTE


class InvalidConfig(StreamHouseError):
    """A config name we do not honour, or a value that does not fit it."""

    code = ErrorCode.INVALID_CONFIG
    blame = Blame.REMOTE


class ProducerRefused(StreamHouseError):
    """An idempotent producer's batch broke its sequence or epoch; the code says how."""

    code = ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    blame = Blame.REMOTE


class OffsetOutOfRange(StreamHouseError):
    """A fetch asked for an offset below the log start or above the log end."""

    code = ErrorCode.OFFSET_OUT_OF_RANGE
    blame = Blame.REMOTE


class NotLeader(StreamHouseError):
    """This agent does not hold the partition's lease."""

    code = ErrorCode.NOT_LEADER_OR_FOLLOWER
    blame = Blame.REMOTE


class NotCoordinator(StreamHouseError):
    """This agent does not hold the lease of the group's coordinator slot."""

    code = ErrorCode.NOT_COORDINATOR
    blame = Blame.REMOTE


class StorageError(StreamHouseError):
    """Local storage (disk, object store, metadata store) failed; the request may be retried."""

    code = ErrorCode.KAFKA_STORAGE_ERROR


class DiskFull(StorageError):
    """The disk has no room for the write."""


class DiskIOError(StorageError):
    """A disk write or fsync failed; data not fsynced may be lost."""


class ObjectStoreUnavailable(StorageError):
    """The object store refused or failed the request (throttled, timed out, down)."""


class ObjectNotFound(StorageError):
    """The object store has no object under the key."""


class CorruptObject(StorageError):
    """An object's bytes fail their checksum or structure checks."""


class DamagedData(StreamHouseError):
    """Offsets whose object is missing from the bucket or corrupt: no retry reads them. Not a
    StorageError: answered CORRUPT_MESSAGE, which librdkafka, kafka-python and the Java
    client hand to the application (aiokafka logs a warning), where they retry
    KAFKA_STORAGE_ERROR silently for ever."""

    code = ErrorCode.CORRUPT_MESSAGE


class MetadataUnavailable(StorageError):
    """The metadata store failed the operation; nothing was committed."""


class MetadataUnknownOutcome(StorageError):
    """The metadata commit may or may not have happened (e.g. the connection died at commit)."""


class Backpressure(StorageError):
    """A bounded queue is full and stayed full for the allowed wait."""

    code = ErrorCode.REQUEST_TIMED_OUT


class PeerUnreachable(StreamHouseError):
    """Another agent could not be reached or did not answer in time; the caller retries."""

    code = ErrorCode.NETWORK_EXCEPTION


class SnapshotIncompatible(StreamHouseError):
    """A metadata snapshot holds tables or columns this version does not have (written by a
    newer StreamHouse), or rows its schema refuses."""


class RebuildRefused(StreamHouseError):
    """A rebuild from the bucket was asked of a metadata store that is in use."""
