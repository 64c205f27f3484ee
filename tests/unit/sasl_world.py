"""What the SASL door's tests share: an in-test Authenticator holding real credentials (SCRAM
keys derived by scramp's own helpers), an agent served from a thread of the test process (so
blocking Kafka clients can talk to it), and a self-signed certificate made at test time."""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from scramp import ScramMechanism

from streamhouse.agent import Agent, open_agent
from streamhouse.config import HTTP_DISABLED, Settings
from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.kafka.sasl import SCRAM_MECHANISMS
from streamhouse.ports.tenancy import ScramCredential


class Closeable(Protocol):
    async def close(self) -> None: ...


ORG = "acme"
USER = "SHKTESTKEY1"
SECRET = "right-secret-0123456789"
T = TypeVar("T")
START_TIMEOUT_S = 60
CALL_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class InTestAuthenticator(Authenticator):
    """Users and their secrets kept in memory, SCRAM credentials as a store would keep them;
    each user is its org's admin (ACLs aside: the tests using it are about authentication)."""

    def __init__(self, users: dict[str, str]) -> None:
        self._secrets = dict(users)
        self._scram: dict[tuple[str, str], ScramCredential] = {}
        for user, secret in users.items():
            for mechanism in SCRAM_MECHANISMS:
                salt, stored_key, server_key, iterations = ScramMechanism(mechanism).make_auth_info(
                    secret
                )
                self._scram[user, mechanism] = ScramCredential(
                    user, ORG, mechanism, salt, iterations, stored_key, server_key
                )
        self.plain_checks = 0

    async def plain(self, user: str, password: str) -> Principal | None:
        self.plain_checks += 1
        secret = self._secrets.get(user)
        if secret is None or not hmac.compare_digest(secret.encode(), password.encode()):
            return None
        return Principal(ORG, user, "admin")

    async def scram_credential(
        self, user: str, mechanism: str
    ) -> tuple[Principal, ScramCredential] | None:
        credential = self._scram.get((user, mechanism))
        return None if credential is None else (Principal(ORG, user, "admin"), credential)


@dataclass
class AgentThread:
    """An agent on a free loopback port, served by an event loop of its own thread."""

    settings: Settings
    authenticator: Authenticator | None
    agent: Agent | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _thread: threading.Thread | None = None
    # doors opened once the agent is, each closed before it (the REST door's tests)
    door_openers: tuple[Callable[[Agent], Awaitable[Closeable]], ...] = ()
    doors: list[Closeable] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        assert self.agent is not None
        return f"127.0.0.1:{self.agent.kafka_port}"

    @property
    def port(self) -> int:
        assert self.agent is not None
        return self.agent.kafka_port

    def start(self) -> AgentThread:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(START_TIMEOUT_S), "the agent did not start"
        if self._error is not None:
            raise self._error
        return self

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the agent's loop (its services live there) and wait for it."""
        assert self._loop is not None, "the agent is not running"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_S)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)

    async def _main(self) -> None:
        try:
            self.agent = await open_agent(self.settings, self.authenticator)
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        try:
            for open_door in self.door_openers:
                self.doors.append(await open_door(self.agent))
        except BaseException as error:
            self._error = error
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        if self._error is None:
            await self._stop.wait()
        for door in reversed(self.doors):
            await door.close()
        await self.agent.close()


def agent_settings(data_dir: Path, protocol: str, cert: tuple[str, str] = ("", "")) -> Settings:
    return Settings(
        data_dir=str(data_dir),
        kafka_port=0,
        http_port=HTTP_DISABLED,
        schema_registry_port=HTTP_DISABLED,
        flush_interval_ms=50,
        group_initial_rebalance_delay_ms=0,
        kafka_security_protocol=protocol,
        ssl_certfile=cert[0],
        ssl_keyfile=cert[1],
    )


def sasl_plain(bootstrap: str, user: str, secret: str) -> dict[str, Any]:
    """A confluent-kafka client's config signing in with SASL PLAIN over plaintext."""
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": secret,
    }
