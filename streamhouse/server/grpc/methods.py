"""How a servicer's coroutine becomes a gRPC method of the door: the request parsed leniently
(a message that does not parse is INVALID_ARGUMENT, not gRPC's INTERNAL), the caller checked,
and every refusal translated once: the door's own (CallRefused), the engine's (its Kafka code
through status.STATUS_OF_ERROR), missing credentials (UNAUTHENTICATED). Any other exception
is our own bug: reported to the agent's failure signal (the agent stops, as on every door)
and answered INTERNAL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import StreamHouseError
from streamhouse.server.grpc.caller import Caller, CallerCheck
from streamhouse.server.grpc.status import CallRefused, status_of
from streamhouse.server.http_auth import Unauthenticated

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)
Context = grpc.aio.ServicerContext[Any, Any]
WHERE = "the gRPC door"


@dataclass(frozen=True)
class Malformed:
    """A request message that did not parse."""

    reason: str


def lenient(message_type: type[Message]) -> Callable[[bytes], Message | Malformed]:
    """A deserializer that answers Malformed instead of raising."""

    def parse(data: bytes) -> Message | Malformed:
        try:
            return message_type.FromString(data)
        except (DecodeError, RuntimeWarning, ValueError) as error:
            return Malformed(str(error) or type(error).__name__)

    return parse


def parsed(request: Message | Malformed) -> Any:
    """The request; INVALID_ARGUMENT when it did not parse."""
    if isinstance(request, Malformed):
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed message: {request.reason}")
    return request


class Methods:
    """Builds the door's method handlers around its checks and its one error translation."""

    def __init__(self, callers: CallerCheck, failure: AgentFailure) -> None:
        self._callers = callers
        self._failure = failure

    async def _caller(self, context: Context) -> Caller:
        return await self._callers.caller(context.invocation_metadata() or (), context.peer())

    async def _refuse(self, context: Context, error: Exception) -> None:
        """Abort the call with the status of `error` (raises AbortError)."""
        if isinstance(error, CallRefused):
            await context.abort(error.status, str(error))
        if isinstance(error, StreamHouseError):
            await context.abort(status_of(error.code), str(error))
        if isinstance(error, Unauthenticated):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        self._failure.report(error, WHERE)
        await context.abort(grpc.StatusCode.INTERNAL, "the agent failed serving this call")

    async def _answered(
        self, context: Context, serve: Callable[[Caller], Awaitable[Response]]
    ) -> Response:
        """`serve`'s answer for the call's caller, or the call aborted with its refusal."""
        try:
            return await serve(await self._caller(context))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:
            await self._refuse(context, error)
            raise AssertionError("abort returned") from error

    def unary(
        self,
        serve: Callable[[Request, Caller, Context], Awaitable[Response]],
        request_type: type[Request],
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def handle(request: Message | Malformed, context: Context) -> Response:
            return await self._answered(
                context, lambda caller: serve(parsed(request), caller, context)
            )

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=lenient(request_type), response_serializer=_serialize
        )

    def client_stream(
        self,
        serve: Callable[[AsyncIterator[Request], Caller, Context], Awaitable[Response]],
        request_type: type[Request],
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def handle(
            requests: AsyncIterator[Message | Malformed], context: Context
        ) -> Response:
            return await self._answered(
                context, lambda caller: serve(_each_parsed(requests), caller, context)
            )

        return grpc.stream_unary_rpc_method_handler(
            handle, request_deserializer=lenient(request_type), response_serializer=_serialize
        )

    def server_stream(
        self,
        serve: Callable[[Request, Caller, Context], AsyncIterator[Response]],
        request_type: type[Request],
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def handle(request: Message | Malformed, context: Context) -> AsyncIterator[Response]:
            try:
                caller = await self._caller(context)
                async for response in serve(parsed(request), caller, context):
                    yield response
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as error:
                await self._refuse(context, error)

        return grpc.unary_stream_rpc_method_handler(
            handle,
            request_deserializer=lenient(request_type),
            response_serializer=_serialize,
        )


async def _each_parsed(requests: AsyncIterator[Message | Malformed]) -> AsyncIterator[Any]:
    async for request in requests:
        yield parsed(request)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
