"""What the gRPC door's tests share: an agent served from a thread of the test process with its
gRPC door open on a free loopback port (so blocking Kafka clients and grpc.aio channels of the
test's own loop can both talk to it), and helpers to run a coroutine against it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from streamhouse.agent import open_agent, open_grpc
from streamhouse.server.grpc_door import GrpcDoor
from tests.unit.sasl_world import AgentThread, agent_settings

T = TypeVar("T")
CALL_TIMEOUT_S = 30


@dataclass
class GrpcAgentThread(AgentThread):
    """AgentThread with the agent's gRPC door open as `agent serve` opens it."""

    door: GrpcDoor | None = None

    @property
    def grpc_target(self) -> str:
        assert self.door is not None
        return f"127.0.0.1:{self.door.port}"

    async def _main(self) -> None:
        try:
            self.agent = await open_agent(self.settings, self.authenticator)
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        try:
            self.door = await open_grpc(self.agent)
        except BaseException as error:
            await self.agent.close()
            self._error = error
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await self.door.close()
        await self.agent.close()

    def in_agent_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine in the agent's own loop (engine calls, e.g. issuing keys)."""
        assert self._loop is not None
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(), self._loop)
        return future.result(CALL_TIMEOUT_S)


def start_agent(tmp_path: Path, protocol: str = "PLAINTEXT", **overrides: Any) -> GrpcAgentThread:
    settings = agent_settings(tmp_path, protocol).with_overrides(**{"grpc_port": 0, **overrides})
    return GrpcAgentThread(settings, None).start()  # type: ignore[return-value]


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run an async scenario (grpc.aio channels live in its loop) from a sync test."""

    async def bounded() -> T:
        async with asyncio.timeout(CALL_TIMEOUT_S * 4):
            return await scenario()

    return asyncio.run(bounded())


def channel(world: GrpcAgentThread) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(world.grpc_target)


def basic(key: str, secret: str) -> tuple[tuple[str, str], ...]:
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


def bearer(key: str, secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}:{secret}"),)
