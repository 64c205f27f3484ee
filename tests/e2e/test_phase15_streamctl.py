"""e2e phase 15: streamctl's Kafka-speaking commands against an agent requiring API keys.

With an acme admin key (`--key/--secret` or STREAMHOUSE_KEY/STREAMHOUSE_SECRET), `topics`,
`groups`, `cluster` and `transactions` authenticate by SASL (SCRAM-SHA-512 unless
`--sasl-mechanism` says otherwise) and show acme's own topics, groups and transactional ids
by the names acme gave them; a wrong secret is one line naming SASL_AUTHENTICATION_FAILED, no
key one saying the agent requires one; over SASL_SSL the same works given `--ca-file`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.e2e.secured_agent import Secured, secured_agent

CLIENT_TIMEOUT_S = 30  # a transaction's begin and commit on a loaded machine
TOPIC = "orders"
GROUP = "order-readers"
TRANSACTIONAL_ID = "order-writer"
DEFAULT_ORG_TOPIC = "payments"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    with secured_agent(tmp_path_factory.mktemp("streamctl")) as running:
        yield running


def env(secured: Secured, key: str | None, secret: str | None) -> dict[str, Any]:
    """streamctl's environment: this agent, and the key given (None: no key at all)."""
    return {
        "STREAMHOUSE_BOOTSTRAP": secured.agent.bootstrap,
        "STREAMHOUSE_HTTP": secured.agent.http_base,
        "STREAMHOUSE_KEY": key,
        "STREAMHOUSE_SECRET": secret,
        "STREAMHOUSE_SASL_MECHANISM": None,
        "STREAMHOUSE_CA_FILE": None,
    }


def acme(secured: Secured, *args: str) -> Any:
    """streamctl run with acme's admin key; it must succeed."""
    result = secured.streamctl(*args, env=env(secured, secured.key, secured.secret))
    assert result.exit_code == 0, result.output
    return result


def commit_a_transaction(secured: Secured) -> None:
    """acme's producer `order-writer` commits one record into `orders`."""
    producer = Producer(
        {
            "bootstrap.servers": secured.agent.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": secured.key,
            "sasl.password": secured.secret,
            "transactional.id": TRANSACTIONAL_ID,
        }
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(TOPIC, b"one order")
    producer.commit_transaction(CLIENT_TIMEOUT_S)


def test_an_org_admin_key_sees_and_manages_its_org_s_own_names(secured: Secured) -> None:
    admin_key, admin_secret = secured.admin
    elsewhere = secured.streamctl(
        "topics", "create", DEFAULT_ORG_TOPIC, env=env(secured, admin_key, admin_secret)
    )
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "2 partition" in acme(secured, "topics", "create", TOPIC, "-p", "2").output
    listed = json.loads(acme(secured, "topics", "list", "-o", "json").stdout)
    assert [row["topic"] for row in listed] == [TOPIC]
    described = json.loads(acme(secured, "topics", "describe", TOPIC, "-o", "json").stdout)
    assert [row["partition"] for row in described["partitions"]] == [0, 1]
    assert "bytes" in described["partitions"][0]  # the HTTP API answered with the same key
    acme(secured, "groups", "reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest")
    groups = json.loads(acme(secured, "groups", "list", "-o", "json").stdout)
    assert [row["group"] for row in groups] == [GROUP]
    cluster = json.loads(acme(secured, "cluster", "-o", "json").stdout)
    assert {row["topic"] for row in cluster["partitions"]} == {TOPIC}
    commit_a_transaction(secured)
    transactions = json.loads(acme(secured, "transactions", "list", "-o", "json").stdout)
    assert [row["transactional id"] for row in transactions] == [TRANSACTIONAL_ID]


@pytest.mark.parametrize(
    "command", [("topics", "list"), ("groups", "list"), ("cluster",), ("transactions", "list")]
)
def test_a_wrong_secret_is_one_line_naming_the_sasl_failure(
    secured: Secured, command: tuple[str, ...]
) -> None:
    wrong = secured.secret[:-1] + ("A" if secured.secret[-1] != "A" else "B")
    result = secured.streamctl(*command, env=env(secured, secured.key, wrong))
    assert result.exit_code == 1
    assert "SASL_AUTHENTICATION_FAILED" in result.output
    assert "revoked" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [("topics", "list"), ("cluster",)])
def test_no_key_says_the_agent_requires_one(secured: Secured, command: tuple[str, ...]) -> None:
    result = secured.streamctl(*command, env=env(secured, None, None))
    assert result.exit_code == 1
    assert "requires an API key" in result.output and "--key" in result.output


def test_a_key_without_its_secret_is_refused_before_connecting(secured: Secured) -> None:
    result = secured.streamctl("topics", "list", env=env(secured, secured.key, None))
    assert result.exit_code == 1 and "--key needs --secret" in result.output


def test_plain_and_scram_sha_256_are_taken_too(secured: Secured) -> None:
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        listed = acme(secured, "topics", "list", "--sasl-mechanism", mechanism, "-o", "json")
        assert isinstance(json.loads(listed.stdout), list)


def test_over_sasl_ssl_with_the_ca_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    with secured_agent(tmp_path_factory.mktemp("streamctl-ssl"), "SASL_SSL") as tls:
        given = {**env(tls, tls.key, tls.secret), "STREAMHOUSE_CA_FILE": tls.cafile}
        created = tls.streamctl("topics", "create", TOPIC, "-p", "1", env=given)
        assert created.exit_code == 0, created.output
        cluster = tls.streamctl("cluster", "-o", "json", env=given)
        assert cluster.exit_code == 0, cluster.output
        assert {row["topic"] for row in json.loads(cluster.stdout)["partitions"]} == {TOPIC}
        without_ca = tls.streamctl("topics", "list", env=env(tls, tls.key, tls.secret))
        assert without_ca.exit_code == 1 and "--ca-file" in without_ca.output
