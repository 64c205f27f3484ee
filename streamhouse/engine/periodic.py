"""A background step run every interval until stopped, watched by the agent's failure signal:
a store failure (StorageError) is logged and the step runs again at the next interval; any
other exception is our own bug and fails the agent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from streamhouse.engine.failure import AgentFailure, BackgroundTask
from streamhouse.errors import StorageError
from streamhouse.ports.clock import Clock


class Periodic:
    """Runs `step` every `interval_ms` of `clock` (the first after one interval)."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        interval_ms: int,
        step: Callable[[], Awaitable[object]],
        logger: logging.Logger,
    ) -> None:
        assert interval_ms > 0, f"{name} is off"
        self.name = name
        self.interval_ms = interval_ms
        self._clock = clock
        self._step = step
        self._log = logger
        self._task = BackgroundTask(name)

    def start(self, failure: AgentFailure) -> None:
        self._task.start(failure, self._loop())

    async def stop(self) -> None:
        await self._task.stop()

    async def _loop(self) -> None:
        while True:
            await self._clock.sleep_ms(self.interval_ms)
            try:
                await self._step()
            except StorageError as error:  # retried at the next interval
                self._log.warning(
                    "%s failed, retrying in %d ms: %s", self.name, self.interval_ms, error
                )
