"""streamctl's one description of how it reaches an agent's Kafka listener (`Connection` in
cli/agent_client.py): the security protocol the key and the CA file choose, librdkafka's
settings and our own client's credentials from the same options."""

from __future__ import annotations

import pytest

from streamhouse.cli.agent_client import CommandError, Connection, SaslMechanism
from streamhouse.io.kafka_client import SaslCredentials

BOOTSTRAP = "127.0.0.1:9092"
TIMEOUT_S = 10.0


@pytest.mark.parametrize(
    ("key", "ca_file", "protocol"),
    [
        (None, None, "PLAINTEXT"),
        ("SHKEY", None, "SASL_PLAINTEXT"),
        ("SHKEY", "ca.pem", "SASL_SSL"),
        (None, "ca.pem", "SSL"),
    ],
)
def test_the_key_and_the_ca_file_choose_the_protocol(
    key: str | None, ca_file: str | None, protocol: str
) -> None:
    connection = Connection(BOOTSTRAP, TIMEOUT_S, key, "s3cret", ca_file=ca_file)
    assert connection.client_config()["security.protocol"] == protocol


def test_librdkafka_and_our_client_get_the_same_key() -> None:
    connection = Connection(
        BOOTSTRAP, TIMEOUT_S, "SHKEY", "s3cret", SaslMechanism.SCRAM_SHA_256, "ca.pem"
    )
    config = connection.client_config()
    assert {k: v for k, v in config.items() if k.startswith(("sasl.", "ssl."))} == {
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "SHKEY",
        "sasl.password": "s3cret",
        "ssl.ca.location": "ca.pem",
    }
    assert connection.credentials() == SaslCredentials("SCRAM-SHA-256", "SHKEY", "s3cret")


def test_without_a_key_nothing_of_sasl_is_set() -> None:
    connection = Connection(BOOTSTRAP, TIMEOUT_S, secret="stray")
    assert not [k for k in connection.client_config() if k.startswith("sasl.")]
    assert connection.credentials() is None


def test_a_key_without_its_secret_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="--key needs --secret"):
        Connection(BOOTSTRAP, TIMEOUT_S, "SHKEY").client_config()


@pytest.mark.parametrize("bootstrap", ["9092", "host:", "host:port"])
def test_a_bootstrap_that_is_not_host_port_is_a_command_error(bootstrap: str) -> None:
    with pytest.raises(CommandError, match="host:port"):
        Connection(bootstrap, TIMEOUT_S).addresses()


def test_a_bootstrap_may_list_several_agents() -> None:
    listed = Connection("127.0.0.1:9092, localhost:9093", TIMEOUT_S).addresses()
    assert listed == [("127.0.0.1", 9092), ("localhost", 9093)]
