"""The agent's one failure signal: every service and door reports our own failures into it.

Our own invariant failures crash loudly (DESIGN §1): a background service that dies, or a
request whose handler or response building raises anything but a `StreamHouseError`,
reports here. The first report fails the agent: its traceback is logged, every callback
registered with `on_failure` runs at once (the Kafka listener stops serving, the
composition root stops the process with exit 70, the simulator counts a crash), and
`wait` returns. Remote mistakes never come here: they are answered with error codes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("streamhouse.agent")


def _never() -> bool:
    return False


class AgentFailure:
    """Whether, and with what, the agent failed; owned by the composition root."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[BaseException], None]] = []
        self._failed = asyncio.Event()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        """Call `callback(error)` when the agent fails (at once if it already has)."""
        self._callbacks.append(callback)
        if self.error is not None:
            callback(self.error)

    def report(self, error: BaseException, where: str) -> None:
        """Our own failure in `where`: log its traceback and fail the agent (the first report
        decides; later ones are logged too, they may tell more of the story)."""
        first = self.error is None
        log.critical(
            "our own invariant failed in %s; the agent stops%s",
            where,
            "" if first else " (it has failed already)",
            exc_info=error,
        )
        if not first:
            return
        self.error = error
        self._failed.set()
        for callback in list(self._callbacks):
            callback(error)

    def watch(self, task: asyncio.Task[None], stopping: Callable[[], bool] = _never) -> None:
        """`task` is a background service that must never end on its own: unless it is
        cancelled or ends while `stopping()`, its end fails the agent."""
        task.add_done_callback(lambda done: self._service_ended(done, stopping))

    def _service_ended(self, task: asyncio.Task[None], stopping: Callable[[], bool]) -> None:
        if task.cancelled() or stopping():
            return
        error = task.exception() or RuntimeError(f"{task.get_name()} stopped on its own")
        self.report(error, f"the background service {task.get_name()}")

    async def wait(self) -> BaseException:
        """Return the error the agent failed with, once it has."""
        await self._failed.wait()
        assert self.error is not None
        return self.error


class BackgroundTask:
    """The one task of a background service: started under the failure signal's watch (its
    end fails the agent), stopped by cancelling it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self, failure: AgentFailure, run: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(run, name=self._name)
        failure.watch(self._task, stopping=lambda: self._stopping)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
