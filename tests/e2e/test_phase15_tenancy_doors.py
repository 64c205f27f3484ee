"""e2e phase 15 (the HTTP doors): an agent requiring API keys keeps orgs apart on its schema
registry and its HTTP API too.

confluent-kafka's SchemaRegistryClient authenticates with `basic.auth.user.info` (key:secret):
two orgs each register subject `orders-value` and get their own versions; a request without
credentials or with a wrong secret is a 401 (Confluent's 40101, with a Basic challenge); reading
another org's subject, or its schema by a guessed id, is a 404 exactly as for something that
does not exist, and changes nothing. /api/v1/topics/{name}/partitions names the caller's org's
topic, so another org's topic is a 404.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.e2e.secured_agent import Secured, secured_agent
from tests.unit.test_sasl_clients import CLIENT_TIMEOUT_S, confluent_config

SUBJECT = "orders-value"
HTTP_TIMEOUT_S = 20


def _record(name: str, field: str) -> Schema:
    fields = [{"name": field, "type": "string"}]
    return Schema(json.dumps({"type": "record", "name": name, "fields": fields}), "AVRO")


ORDER = _record("Order", "id")
INVOICE = _record("Invoice", "number")
PAYMENT = _record("Payment", "iban")


class Tenants:
    """The running agent and a member key in each of two orgs."""

    def __init__(self, secured: Secured) -> None:
        self.secured = secured
        self.acme = secured.key, secured.secret
        self.globex = secured.issue("globex")
        self.admin = secured.admin

    def registry(self, key: str, secret: str) -> SchemaRegistryClient:
        return SchemaRegistryClient(
            {
                "url": self.secured.agent.registry_url,
                "basic.auth.user.info": f"{key}:{secret}",
            }
        )


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    with secured_agent(tmp_path_factory.mktemp("doors")) as secured:
        yield Tenants(secured)


def _get(url: str, credentials: tuple[str, str] | None) -> tuple[int, Message, Any]:
    """(status, headers (case-insensitive), JSON body) of a GET, refusals included."""
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
            return answer.status, answer.headers, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, json.loads(refused.read())


def _refusal_code(call: Any, *args: Any) -> int:
    with pytest.raises(SchemaRegistryError) as refused:
        call(*args)
    code: int = refused.value.error_code
    return code


def test_each_org_registers_the_same_subject_name_and_sees_its_own(tenants: Tenants) -> None:
    acme, globex = tenants.registry(*tenants.acme), tenants.registry(*tenants.globex)
    acme_id = acme.register_schema(SUBJECT, ORDER)
    globex_id = globex.register_schema(SUBJECT, INVOICE)
    assert acme_id != globex_id
    assert json.loads(acme.get_latest_version(SUBJECT).schema.schema_str)["name"] == "Order"
    assert json.loads(globex.get_latest_version(SUBJECT).schema.schema_str)["name"] == "Invoice"
    assert acme.get_versions(SUBJECT) == [1] and globex.get_versions(SUBJECT) == [1]
    assert SUBJECT in acme.get_subjects() and SUBJECT in globex.get_subjects()
    acme.set_compatibility(level="NONE")  # acme's global config is acme's alone
    assert globex.get_compatibility() == "BACKWARD"
    assert acme.get_compatibility() == "NONE"


@pytest.mark.parametrize("credentials", ["none", "wrong secret", "unknown key"])
def test_no_or_wrong_credentials_are_refused_with_a_basic_challenge(
    tenants: Tenants, credentials: str
) -> None:
    key, secret = tenants.acme
    sent = {
        "none": None,
        "wrong secret": (key, secret + "x"),
        "unknown key": ("SH" + "Z" * 16, secret),
    }[credentials]
    status, headers, body = _get(tenants.secured.agent.registry_url + "/subjects", sent)
    assert status == 401 and body["error_code"] == 40101
    assert headers.get("WWW-Authenticate", "").startswith("Basic")
    if sent is not None:
        client = tenants.registry(*sent)
        assert _refusal_code(client.get_subjects) == 40101


def test_another_org_s_subjects_and_ids_are_unknown_and_stay_unchanged(tenants: Tenants) -> None:
    acme, globex = tenants.registry(*tenants.acme), tenants.registry(*tenants.globex)
    secret_id = acme.register_schema("payments-value", PAYMENT)
    assert _refusal_code(globex.get_versions, "payments-value") == 40401
    assert _refusal_code(globex.get_latest_version, "payments-value") == 40401
    assert _refusal_code(globex.delete_subject, "payments-value") == 40401
    assert "payments-value" not in globex.get_subjects()
    assert _refusal_code(globex.get_schema, secret_id) == 40403
    url = tenants.secured.agent.registry_url
    for guessed in range(1, secret_id + 2):  # every id globex's subjects do not use
        status, _, body = _get(f"{url}/schemas/ids/{guessed}", tenants.globex)
        theirs = _get(f"{url}/schemas/ids/{guessed}/versions", tenants.globex)[2]
        if status == 200:
            assert theirs and all(v["subject"] != "payments-value" for v in theirs)
        else:
            assert (status, body["error_code"]) == (404, 40403)
    assert acme.get_versions("payments-value") == [1]  # nothing changed for acme
    assert json.loads(acme.get_schema(secret_id).schema_str) == json.loads(PAYMENT.schema_str)


def test_the_topic_route_names_the_caller_s_org_s_topic(tenants: Tenants) -> None:
    topic = "p15-doors-orders"
    config = confluent_config(tenants.secured.listener, "PLAIN", *tenants.admin)
    admin = AdminClient(config)
    for future in admin.create_topics([NewTopic(topic, 2)]).values():
        future.result(CLIENT_TIMEOUT_S)
    url = f"{tenants.secured.agent.http_base}/api/v1/topics/{topic}/partitions"
    status, _, body = _get(url, tenants.admin)  # the default org's admin: its own topic
    assert status == 200 and [p["partition"] for p in body["partitions"]] == [0, 1]
    status, _, body = _get(url, tenants.acme)  # acme has no topic of that name
    assert (status, body["error"]) == (404, "UNKNOWN_TOPIC_OR_PARTITION")
    assert "acme" not in body["message"]
    status, headers, _ = _get(url, None)
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Basic")


def test_streamctl_schemas_takes_a_key_and_says_when_one_is_needed(
    tenants: Tenants, tmp_path: Path
) -> None:
    schema = tmp_path / "shipment.avsc"
    schema.write_text(_record("Shipment", "carrier").schema_str)
    url = tenants.secured.agent.registry_url
    key, secret = tenants.acme
    acme = {"STREAMHOUSE_REGISTRY": url, "STREAMHOUSE_KEY": key, "STREAMHOUSE_SECRET": secret}
    streamctl = tenants.secured.streamctl
    registered = streamctl("schemas", "register", "shipments-value", str(schema), env=acme)
    assert registered.exit_code == 0, registered.output
    listed = streamctl("schemas", "list", "-o", "json", env=acme)
    assert "shipments-value" in [row["subject"] for row in json.loads(listed.stdout)]
    globex_key, globex_secret = tenants.globex  # by flags, and another org's subjects
    by_flags = ("--key", globex_key, "--secret", globex_secret, "-o", "json")
    listed = streamctl("schemas", "list", *by_flags, env={"STREAMHOUSE_REGISTRY": url})
    assert listed.exit_code == 0, listed.output
    assert "shipments-value" not in [row["subject"] for row in json.loads(listed.stdout)]
    for command in (["list"], ["register", "shipments-value", str(schema)]):
        refused = streamctl("schemas", *command, env={"STREAMHOUSE_REGISTRY": url})
        said = " ".join(refused.output.split())
        assert refused.exit_code == 1 and "40101" in said, said
        assert "give an API key with --key and --secret" in said
