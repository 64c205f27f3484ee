"""Confluent REST Proxy API v3: the cluster, its brokers, topics, topic configs and partitions
under /v3/clusters/{cluster_id}, answered in Confluent's resource shapes (`kind`, `metadata`
with `self`, `related` links) over the admin service.

The one cluster is `CLUSTER_ID` (engine/cluster.py); any other id is 404. Topics are the
caller's org's; a listing leaves out what the caller may not DESCRIBE, and each change needs
the ACL operation Kafka would ask for (CREATE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from streamhouse.engine.admin import ConfigChange, ConfigOperation, TopicDescription
from streamhouse.engine.cluster import CLUSTER_ID, AgentAddress
from streamhouse.errors import StreamHouseError, UnknownTopicOrPartition
from streamhouse.log.topic_configs import ConfigEntry
from streamhouse.ports.topics import TopicRecord
from streamhouse.server.rest_common import (
    BAD_REQUEST,
    V3_CONTENT_TYPE,
    Caller,
    RestError,
    RestServices,
    body_bytes,
    caller_in,
    engine_refusal,
    field,
    json_object,
)
from streamhouse.tenancy.acls import AclOperation, ResourceType

Op = AclOperation
TOPIC = ResourceType.TOPIC
BROKER_DEFAULT_PARTITIONS = -1
V3_PREFIX = "/v3/clusters/{cluster_id}"


def answer(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=V3_CONTENT_TYPE)


def v3_refusal(status: int, message: str) -> RestError:
    """v3 answers carry the HTTP status as the error code."""
    return RestError(status, status, message)


def check_cluster(cluster_id: str) -> None:
    if cluster_id != CLUSTER_ID:
        raise v3_refusal(404, f"Cluster {cluster_id} cannot be found.")


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def resource(request: Request, kind: str, path: str, crn: str, **fields: Any) -> dict[str, Any]:
    """One v3 resource: its kind, its own URL and Confluent resource name, its fields."""
    return {
        "kind": kind,
        "metadata": {"self": f"{base_url(request)}{path}", "resource_name": crn},
        **fields,
    }


def listing(request: Request, kind: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"self": str(request.url), "next": None},
        "data": data,
    }


def related(request: Request, path: str) -> dict[str, str]:
    return {"related": f"{base_url(request)}{path}"}


def cluster_path(*parts: object) -> str:
    return "/".join([f"/v3/clusters/{CLUSTER_ID}", *(str(part) for part in parts)])


def crn(*parts: str) -> str:
    return "crn:///kafka=" + CLUSTER_ID + "".join("/" + part for part in parts)


def install_v3(app: FastAPI, services: RestServices) -> None:
    """The cluster, broker, topic, config and partition routes."""
    _cluster_routes(app, services)
    _topic_routes(app, services)
    _config_routes(app, services)
    _partition_routes(app, services)


def _cluster_body(request: Request, services: RestServices) -> dict[str, Any]:
    controller = services.admin.describe_cluster().controller_id
    links = {
        name: related(request, cluster_path(name))
        for name in ("acls", "brokers", "broker-configs", "consumer-groups", "topics")
    }
    return resource(
        request,
        "KafkaCluster",
        cluster_path(),
        crn(),
        cluster_id=CLUSTER_ID,
        controller=related(request, cluster_path("brokers", controller)),
        acls=links["acls"],
        brokers=links["brokers"],
        broker_configs=links["broker-configs"],
        consumer_groups=links["consumer-groups"],
        topics=links["topics"],
        partition_reassignments=related(request, cluster_path("topics", "-", "partitions", "-")),
    )


def _broker_body(request: Request, agent: AgentAddress) -> dict[str, Any]:
    node = agent.node_id
    return resource(
        request,
        "KafkaBroker",
        cluster_path("brokers", node),
        crn(f"broker={node}"),
        cluster_id=CLUSTER_ID,
        broker_id=node,
        host=agent.host,
        port=agent.port,
        rack=None,
        configs=related(request, cluster_path("brokers", node, "configs")),
        partition_replicas=related(request, cluster_path("brokers", node, "partition-replicas")),
    )


def _cluster_routes(app: FastAPI, services: RestServices) -> None:

    @app.get("/v3/clusters", tags=["v3"], summary="The cluster (there is one)")
    async def clusters(request: Request) -> JSONResponse:
        return answer(listing(request, "KafkaClusterList", [_cluster_body(request, services)]))

    @app.get(V3_PREFIX, tags=["v3"], summary="The cluster")
    async def cluster(request: Request, cluster_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        return answer(_cluster_body(request, services))

    @app.get(V3_PREFIX + "/brokers", tags=["v3"], summary="The agents, as brokers")
    async def brokers(request: Request, cluster_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        agents = services.admin.describe_cluster().agents
        data = [_broker_body(request, agent) for agent in agents]
        return answer(listing(request, "KafkaBrokerList", data))

    @app.get(V3_PREFIX + "/brokers/{broker_id}", tags=["v3"], summary="One broker")
    async def broker(request: Request, cluster_id: str, broker_id: int) -> JSONResponse:
        check_cluster(cluster_id)
        for agent in services.admin.describe_cluster().agents:
            if agent.node_id == broker_id:
                return answer(_broker_body(request, agent))
        raise v3_refusal(404, f"Broker {broker_id} cannot be found.")


def topic_body(request: Request, name: str, topic: TopicRecord) -> dict[str, Any]:
    """A v3 KafkaTopic; `name` as the caller knows it."""
    return resource(
        request,
        "KafkaTopic",
        cluster_path("topics", name),
        crn(f"topic={name}"),
        cluster_id=CLUSTER_ID,
        topic_name=name,
        is_internal=False,
        replication_factor=1,  # the object store is the replica
        partitions_count=topic.partition_count,
        partitions=related(request, cluster_path("topics", name, "partitions")),
        configs=related(request, cluster_path("topics", name, "configs")),
        partition_reassignments=related(
            request, cluster_path("topics", name, "partitions", "-", "reassignment")
        ),
        authorized_operations=[],
    )


async def find_topic(services: RestServices, caller: Caller, name: str) -> TopicRecord:
    """The caller's topic `name`: 404 unless it exists in the caller's org, 403 unless the
    caller may DESCRIBE it."""
    internal = caller.internal(name)
    try:
        topic = await services.admin.topic(internal)
    except UnknownTopicOrPartition:
        raise v3_refusal(404, f"This server does not host this topic-partition: {name}") from None
    except StreamHouseError as error:
        raise engine_refusal(error, name) from None
    caller.require(Op.DESCRIBE, TOPIC, name)
    return topic


def _topic_routes(app: FastAPI, services: RestServices) -> None:

    @app.get(V3_PREFIX + "/topics", tags=["v3"], summary="The caller's topics")
    async def topics(request: Request, cluster_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        data = []
        for topic in await services.admin.list_topics():
            name = caller.shown(topic.name)
            if name is not None and caller.may(Op.DESCRIBE, TOPIC, name):
                data.append(topic_body(request, name, topic))
        return answer(listing(request, "KafkaTopicList", data))

    @app.post(
        V3_PREFIX + "/topics",
        tags=["v3"],
        status_code=201,
        summary="Create a topic",
        description="Body: `topic_name`, `partitions_count` (default: the agent's "
        "num_partitions), `replication_factor` (accepted, the object store is the replica), "
        "`configs` [{name, value}], `validate_only`.",
    )
    async def create_topic(request: Request, cluster_id: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        document = json_object(await body_bytes(request), BAD_REQUEST)
        name = field(document, "topic_name", str, BAD_REQUEST)
        if not name:
            raise v3_refusal(400, "the body needs the field 'topic_name'")
        count = field(document, "partitions_count", int, BAD_REQUEST)
        configs = _config_pairs(field(document, "configs", list, BAD_REQUEST) or [])
        validate_only = bool(field(document, "validate_only", bool, BAD_REQUEST))
        if not caller.grant.may_create_topic(name):
            caller.require(Op.CREATE, TOPIC, name)  # refused in the caller's terms
        try:
            created = await services.admin.create_topic(
                caller.internal(name),
                BROKER_DEFAULT_PARTITIONS if count is None else count,
                configs,
                validate_only=validate_only,
            )
        except StreamHouseError as error:
            raise _v3_engine_refusal(error, name) from None
        return answer(topic_body(request, name, created), 201)

    @app.get(V3_PREFIX + "/topics/{topic_name}", tags=["v3"], summary="One topic")
    async def topic(request: Request, cluster_id: str, topic_name: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        found = await find_topic(services, caller, topic_name)
        return answer(topic_body(request, topic_name, found))

    @app.delete(V3_PREFIX + "/topics/{topic_name}", tags=["v3"], summary="Delete a topic")
    async def delete_topic(request: Request, cluster_id: str, topic_name: str) -> Response:
        check_cluster(cluster_id)
        caller = caller_in(request)
        await find_topic(services, caller, topic_name)
        caller.require(Op.DELETE, TOPIC, topic_name)
        try:
            await services.admin.delete_topic(caller.internal(topic_name))
        except StreamHouseError as error:
            raise _v3_engine_refusal(error, topic_name) from None
        return Response(status_code=204)


def _v3_engine_refusal(error: StreamHouseError, topic: str) -> RestError:
    refused = engine_refusal(error, topic)
    if refused.error_code == 40401:
        return v3_refusal(404, f"This server does not host this topic-partition: {topic}")
    return v3_refusal(refused.status, refused.message)


def _config_pairs(items: list[Any]) -> dict[str, str]:
    """[{name, value}] as a mapping; a malformed item is 400."""
    configs: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise v3_refusal(400, "each config must be an object with a string 'name'")
        value = item.get("value")
        if not isinstance(value, str):
            raise v3_refusal(400, f"the config {item['name']!r} needs a string 'value'")
        configs[item["name"]] = value
    return configs


def _config_body(request: Request, topic: str, entry: ConfigEntry) -> dict[str, Any]:
    return resource(
        request,
        "KafkaTopicConfig",
        cluster_path("topics", topic, "configs", entry.name),
        crn(f"topic={topic}", f"config={entry.name}"),
        cluster_id=CLUSTER_ID,
        topic_name=topic,
        name=entry.name,
        value=entry.value,
        is_default=entry.is_default,
        is_read_only=entry.read_only,
        is_sensitive=False,
        source=entry.source.name,
        synonyms=[
            {"name": synonym.name, "value": synonym.value, "source": synonym.source.name}
            for synonym in entry.synonyms
        ],
    )


def _config_routes(app: FastAPI, services: RestServices) -> None:
    configs_path = V3_PREFIX + "/topics/{topic_name}/configs"

    async def entries(caller: Caller, topic_name: str, names: tuple[str, ...]) -> list[ConfigEntry]:
        await find_topic(services, caller, topic_name)
        caller.require(Op.DESCRIBE_CONFIGS, TOPIC, topic_name)
        return await services.admin.describe_configs(caller.internal(topic_name), names)

    async def alter(caller: Caller, topic_name: str, changes: list[ConfigChange]) -> Response:
        await find_topic(services, caller, topic_name)
        caller.require(Op.ALTER_CONFIGS, TOPIC, topic_name)
        try:
            await services.admin.alter_configs(caller.internal(topic_name), changes)
        except StreamHouseError as error:
            raise _v3_engine_refusal(error, topic_name) from None
        return Response(status_code=204)

    @app.get(configs_path, tags=["v3"], summary="A topic's configs")
    async def configs(request: Request, cluster_id: str, topic_name: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        data = [_config_body(request, topic_name, e) for e in await entries(caller, topic_name, ())]
        return answer(listing(request, "KafkaTopicConfigList", data))

    @app.post(
        configs_path + ":alter",
        tags=["v3"],
        status_code=204,
        summary="Change several configs",
        description="Body: `data` [{name, value, operation: SET (default) or DELETE}].",
    )
    async def alter_configs(request: Request, cluster_id: str, topic_name: str) -> Response:
        check_cluster(cluster_id)
        caller = caller_in(request)
        document = json_object(await body_bytes(request), BAD_REQUEST)
        return await alter(caller, topic_name, _changes(field(document, "data", list) or []))

    @app.get(configs_path + "/{name}", tags=["v3"], summary="One config of a topic")
    async def config(request: Request, cluster_id: str, topic_name: str, name: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        found = await entries(caller, topic_name, (name,))
        if not found:
            raise v3_refusal(404, f"Config {name} cannot be found for topic {topic_name}.")
        return answer(_config_body(request, topic_name, found[0]))

    @app.put(configs_path + "/{name}", tags=["v3"], status_code=204, summary="Set one config")
    async def set_config(request: Request, cluster_id: str, topic_name: str, name: str) -> Response:
        check_cluster(cluster_id)
        caller = caller_in(request)
        document = json_object(await body_bytes(request), BAD_REQUEST)
        value = field(document, "value", str, BAD_REQUEST)
        if value is None:
            raise v3_refusal(400, "the body needs a string 'value'")
        return await alter(caller, topic_name, [ConfigChange(name, ConfigOperation.SET, value)])

    @app.delete(configs_path + "/{name}", tags=["v3"], status_code=204, summary="Reset a config")
    async def reset_config(
        request: Request, cluster_id: str, topic_name: str, name: str
    ) -> Response:
        check_cluster(cluster_id)
        caller = caller_in(request)
        return await alter(caller, topic_name, [ConfigChange(name, ConfigOperation.DELETE, None)])


def _changes(items: list[Any]) -> list[ConfigChange]:
    changes = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise v3_refusal(400, "each entry of 'data' must be an object with a string 'name'")
        operation = str(item.get("operation") or "SET").upper()
        if operation not in ("SET", "DELETE"):
            raise v3_refusal(400, f"operation must be SET or DELETE, not {operation}")
        value = item.get("value")
        if operation == "SET" and not isinstance(value, str):
            raise v3_refusal(400, f"the config {item['name']!r} needs a string 'value'")
        changes.append(
            ConfigChange(
                item["name"],
                ConfigOperation.SET if operation == "SET" else ConfigOperation.DELETE,
                value if operation == "SET" else None,
            )
        )
    return changes


def _partition_body(request: Request, topic: str, partition: int, leader: int) -> dict[str, Any]:
    base = cluster_path("topics", topic, "partitions", partition)
    return resource(
        request,
        "KafkaPartition",
        base,
        crn(f"topic={topic}", f"partition={partition}"),
        cluster_id=CLUSTER_ID,
        topic_name=topic,
        partition_id=partition,
        leader=related(request, f"{base}/replicas/{leader}"),
        replicas=related(request, f"{base}/replicas"),
        reassignment=related(request, f"{base}/reassignment"),
    )


async def describe(services: RestServices, caller: Caller, name: str) -> TopicDescription:
    topic = await find_topic(services, caller, name)
    try:
        return await services.admin.describe_topic(topic)
    except StreamHouseError as error:
        raise _v3_engine_refusal(error, name) from None


def _partition_routes(app: FastAPI, services: RestServices) -> None:
    partitions_path = V3_PREFIX + "/topics/{topic_name}/partitions"

    @app.get(partitions_path, tags=["v3"], summary="A topic's partitions")
    async def partitions(request: Request, cluster_id: str, topic_name: str) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        described = await describe(services, caller, topic_name)
        data = [
            _partition_body(request, topic_name, p.partition, p.leader_node)
            for p in described.partitions
        ]
        return answer(listing(request, "KafkaPartitionList", data))

    @app.get(partitions_path + "/{partition_id}", tags=["v3"], summary="One partition")
    async def partition(
        request: Request, cluster_id: str, topic_name: str, partition_id: int
    ) -> JSONResponse:
        check_cluster(cluster_id)
        caller = caller_in(request)
        described = await describe(services, caller, topic_name)
        for p in described.partitions:
            if p.partition == partition_id:
                return answer(_partition_body(request, topic_name, partition_id, p.leader_node))
        raise v3_refusal(404, f"Partition {partition_id} of topic {topic_name} cannot be found.")
