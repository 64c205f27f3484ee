"""e2e phase 15 (first part): agents that require API keys, with the keys in the metadata store.

An agent started with `--auth required` writes its first admin key to the data directory
(mode 0600, the path logged, never the secret). The admin creates an org and issues keys with
streamctl over the HTTP API; confluent-kafka, aiokafka and kafka-python then authenticate with
those keys over SASL_PLAINTEXT and SASL_SSL, by PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; a wrong
secret, an unknown key and a revoked key are refused; a member key manages nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from tests.e2e.secured_agent import Secured, secured_agent
from tests.unit.test_sasl_clients import (
    CLIENT_TIMEOUT_S,
    FAILURE_TIMEOUT_S,
    aiokafka_config,
    confluent_config,
    confluent_fails_to_authenticate,
    kafka_python_config,
)

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
VALUE = b"hello from a tenant"


@pytest.fixture(scope="module", params=PROTOCOLS)
def secured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    protocol: str = request.param
    with secured_agent(tmp_path_factory.mktemp(protocol.lower()), protocol) as running:
        yield running


def test_the_first_start_leaves_an_admin_key_for_the_operator_only(secured: Secured) -> None:
    path = secured.agent.data_dir / "admin-credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    admin = json.loads(path.read_text())
    log = secured.agent.log_path.read_text()
    assert str(path) in log and admin["secret"] not in log
    listed = secured.streamctl("keys", "list", "--org", "default", "-o", "json")
    assert [row["role"] for row in json.loads(listed.stdout)] == ["admin"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_authenticates_with_an_issued_key(secured: Secured, mechanism: str) -> None:
    config = confluent_config(secured.listener, mechanism, secured.key, secured.secret)
    topic = f"p15-{mechanism.lower()}"
    producer = Producer(config)
    producer.produce(topic, VALUE)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    consumer = Consumer({**config, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(CLIENT_TIMEOUT_S):
            message = consumer.poll(1)
            if message is not None and not message.error():
                break
        assert message is not None and message.value() == VALUE
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_a_wrong_secret_or_an_unknown_key_is_refused(
    secured: Secured, mechanism: str, wrong: str
) -> None:
    key, secret = secured.key, secured.secret
    if wrong == "secret":
        secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    else:
        key = "SH" + "Z" * 16
    assert confluent_fails_to_authenticate(
        confluent_config(secured.listener, mechanism, key, secret)
    )


def test_aiokafka_and_kafka_python_authenticate_by_scram(secured: Secured) -> None:
    from kafka import KafkaProducer

    topic = "p15-other-clients"
    aio = aiokafka_config(secured.listener, "SCRAM-SHA-512", secured.key, secured.secret)

    async def aiokafka_round_trip() -> bytes:
        producer = AIOKafkaProducer(**aio)
        await producer.start()
        try:
            await producer.send_and_wait(topic, VALUE)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **aio)
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), CLIENT_TIMEOUT_S)
        finally:
            await consumer.stop()
        return bytes(message.value)

    assert asyncio.run(aiokafka_round_trip()) == VALUE
    config = kafka_python_config(secured.listener, "SCRAM-SHA-256", secured.key, secured.secret)
    producer = KafkaProducer(**config)
    try:
        producer.send(topic, VALUE).get(timeout=CLIENT_TIMEOUT_S)
    finally:
        producer.close()


def test_a_revoked_key_authenticates_no_more_on_any_door(secured: Secured) -> None:
    key, secret = secured.issue("acme")
    aio = aiokafka_config(secured.listener, "PLAIN", key, secret)

    async def start() -> None:
        producer = AIOKafkaProducer(**aio)
        try:
            await asyncio.wait_for(producer.start(), FAILURE_TIMEOUT_S)
        finally:
            await producer.stop()

    asyncio.run(start())  # works while the key lives
    assert secured.streamctl("keys", "revoke", key).exit_code == 0
    with pytest.raises((SaslAuthenticationFailed, KafkaConnectionError)):
        asyncio.run(start())
    env = {**secured.admin_env, "STREAMHOUSE_KEY": key, "STREAMHOUSE_SECRET": secret}
    refused = secured.streamctl("orgs", "list", env=env)
    assert refused.exit_code == 1 and "401" in refused.output


def test_keys_manage_only_what_their_role_and_org_allow(secured: Secured) -> None:
    member = {**secured.admin_env, "STREAMHOUSE_KEY": secured.key}
    member["STREAMHOUSE_SECRET"] = secured.secret
    refused = secured.streamctl("orgs", "create", "intruders", env=member)
    assert refused.exit_code == 1 and "403" in refused.output
    org_admin, org_secret = secured.issue("acme", "admin")
    env = {**secured.admin_env, "STREAMHOUSE_KEY": org_admin, "STREAMHOUSE_SECRET": org_secret}
    assert secured.streamctl("keys", "create", "--org", "acme", env=env).exit_code == 0
    other = secured.streamctl("keys", "create", "--org", "default", env=env)
    assert other.exit_code == 1 and "403" in other.output
    anonymous = {"STREAMHOUSE_HTTP": secured.agent.http_base}
    assert "401" in secured.streamctl("orgs", "list", env=anonymous).output


def test_scram_credentials_are_managed_through_kafka_s_admin_apis(secured: Secured) -> None:
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialDeletion,
        UserScramCredentialUpsertion,
    )

    key, secret = secured.issue("acme")
    admin_key, admin_secret = secured.admin
    admin = AdminClient(confluent_config(secured.listener, "PLAIN", admin_key, admin_secret))
    described = admin.describe_user_scram_credentials([key])[key].result(CLIENT_TIMEOUT_S)
    assert {(i.mechanism, i.iterations) for i in described.scram_credential_infos} == {
        (ScramMechanism.SCRAM_SHA_256, 4096),
        (ScramMechanism.SCRAM_SHA_512, 4096),
    }
    changes = [
        UserScramCredentialUpsertion(
            key, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"a-new-password"
        ),
    ]
    for future in admin.alter_user_scram_credentials(changes).values():
        future.result(CLIENT_TIMEOUT_S)
    deletion = [UserScramCredentialDeletion(key, ScramMechanism.SCRAM_SHA_512)]
    for future in admin.alter_user_scram_credentials(deletion).values():
        future.result(CLIENT_TIMEOUT_S)
    described = admin.describe_user_scram_credentials([key])[key].result(CLIENT_TIMEOUT_S)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_256, 8192)
    ]
    fresh = confluent_config(secured.listener, "SCRAM-SHA-256", key, "a-new-password")
    producer = Producer(fresh)
    producer.produce("p15-rotated", VALUE)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0  # the new SCRAM password works
    gone = confluent_config(secured.listener, "SCRAM-SHA-512", key, secret)
    assert confluent_fails_to_authenticate(gone)  # its SCRAM-SHA-512 credential went
    member = AdminClient(confluent_config(secured.listener, "PLAIN", key, secret))
    refused = member.describe_user_scram_credentials([admin_key])[admin_key]
    with pytest.raises(KafkaException) as error:
        refused.result(CLIENT_TIMEOUT_S)
    assert error.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_acls_are_kept_per_org_through_kafka_s_admin_apis(secured: Secured) -> None:
    from confluent_kafka.admin import (
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    def admin_of(key: str, secret: str) -> AdminClient:
        return AdminClient(confluent_config(secured.listener, "PLAIN", key, secret))

    org_admin, org_secret = secured.issue("acme", "admin")
    acme = admin_of(org_admin, org_secret)
    reader = AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        f"User:{secured.key}",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    writers = AclBinding(
        ResourceType.TOPIC,
        "orders-",
        ResourcePatternType.PREFIXED,
        "User:*",
        "*",
        AclOperation.WRITE,
        AclPermissionType.DENY,
    )
    for future in acme.create_acls([reader, writers]).values():
        future.result(CLIENT_TIMEOUT_S)
    everything = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    assert sorted(map(str, acme.describe_acls(everything).result(CLIENT_TIMEOUT_S))) == sorted(
        map(str, [reader, writers])
    )
    matching = AclBindingFilter(
        ResourceType.TOPIC,
        "orders-eu",
        ResourcePatternType.MATCH,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    assert acme.describe_acls(matching).result(CLIENT_TIMEOUT_S) == [writers]
    # the default org's admin sees its own org's ACLs, none of acme's
    default = admin_of(*secured.admin)
    assert default.describe_acls(everything).result(CLIENT_TIMEOUT_S) == []
    # a member manages no ACLs; an invalid binding is refused with Kafka's reason
    member = admin_of(*secured.issue("acme"))
    [refused] = member.create_acls([reader]).values()
    with pytest.raises(KafkaException) as error:
        refused.result(CLIENT_TIMEOUT_S)
    assert error.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    [deleted] = acme.delete_acls([matching]).values()
    assert deleted.result(CLIENT_TIMEOUT_S) == [writers]
    assert acme.describe_acls(everything).result(CLIENT_TIMEOUT_S) == [reader]
