"""The simulated network under asyncio streams: ordered intact bytes, partitions, clogs,
resets, flow control; all in virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from sim.loop import SimLoop, run_simulation
from sim.network import (
    SYN_RETRY_WAITS_MS,
    WRITE_BUFFER_HIGH_BYTES,
    NetworkFaults,
    SimNetwork,
    current_host,
    on_host,
)
from sim.rng import SeededRng
from sim.trace import Trace

T = TypeVar("T")
SERVER = "server-1"
PORT = 7000
CHUNKS = 200


def _simulate(
    main: Callable[[SimLoop, SimNetwork], Coroutine[Any, Any, T]],
    faults: NetworkFaults | None = None,
    seed: int = 1,
) -> T:
    network = SimNetwork(SeededRng(seed), faults)
    network.trace = Trace(lambda: network.loop.time_ns())
    return run_simulation(lambda loop: main(loop, network), network)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo every byte back, tagged with the host this handler runs on, until EOF."""
    writer.write(current_host().encode() + b"|")
    while data := await reader.read(1000):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _serve_echo() -> asyncio.AbstractServer:
    return await on_host(SERVER, asyncio.start_server(_echo, SERVER, PORT))


async def _connected_to_echo() -> tuple[
    asyncio.AbstractServer, asyncio.StreamReader, asyncio.StreamWriter
]:
    """An echo server and a client connection past the server's greeting."""
    server = await _serve_echo()
    reader, writer = await asyncio.open_connection(SERVER, PORT)
    assert await reader.readexactly(len(SERVER) + 1) == f"{SERVER}|".encode()
    return server, reader, writer


def test_bytes_arrive_in_order_and_intact_under_delay_and_split_reads() -> None:
    faults = NetworkFaults(delay_ms_min=1, delay_ms_max=50, split_rate=0.5)

    async def main(loop: SimLoop, network: SimNetwork) -> tuple[bytes, bytes, int]:
        server = await _serve_echo()
        reader, writer = await asyncio.open_connection(SERVER, PORT)
        rng = SeededRng(7)
        sent = b"".join(rng.randbytes(rng.randint(1, 3000)) for _ in range(CHUNKS))
        for start in range(0, len(sent), 997):
            writer.write(sent[start : start + 997])
        writer.write_eof()
        received = await reader.read(-1)  # until the server closes after its EOF
        writer.close()
        server.close()
        return sent, received, loop.time_ns()

    sent, received, elapsed_ns = _simulate(main, faults)
    assert received == f"{SERVER}|".encode() + sent
    assert elapsed_ns > 0  # the delays took virtual time


def test_the_same_seed_gives_the_same_trace() -> None:
    faults = NetworkFaults(delay_ms_min=0, delay_ms_max=30, split_rate=0.3)

    async def main(loop: SimLoop, network: SimNetwork) -> str:
        server = await _serve_echo()
        reader, writer = await asyncio.open_connection(SERVER, PORT)
        for index in range(50):
            writer.write(bytes([index]) * (index + 1))
        writer.write_eof()
        await reader.read(-1)
        writer.close()
        server.close()
        assert network.trace is not None
        return network.trace.text()

    first, second = _simulate(main, faults, seed=3), _simulate(main, faults, seed=3)
    assert first == second
    assert first != _simulate(main, faults, seed=4)


def test_nothing_listening_refuses_the_connection() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> None:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(SERVER, PORT)

    _simulate(main)


def test_a_partition_times_connects_out_and_healing_lets_them_through() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> int:
        server = await _serve_echo()
        network.partition("client", SERVER)
        started_ns = loop.time_ns()
        with pytest.raises(TimeoutError):
            await asyncio.open_connection(SERVER, PORT)
        waited_ms = (loop.time_ns() - started_ns) // 1_000_000
        network.heal()
        reader, writer = await asyncio.open_connection(SERVER, PORT)
        assert await reader.readexactly(len(SERVER) + 1) == f"{SERVER}|".encode()
        writer.close()
        server.close()
        return waited_ms

    assert _simulate(main) == sum(SYN_RETRY_WAITS_MS)


def test_an_established_connection_stalls_across_a_partition_then_resumes() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> bytes:
        server, reader, writer = await _connected_to_echo()
        network.partition(SERVER, "client")
        writer.write(b"ping")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), timeout=60)
        network.heal()
        echoed = await asyncio.wait_for(reader.readexactly(4), timeout=1)
        writer.close()
        server.close()
        return echoed

    assert _simulate(main, NetworkFaults(partition_reset_rate=0.0)) == b"ping"


def test_a_partition_may_reset_established_connections() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> None:
        server, reader, writer = await _connected_to_echo()
        network.partition(SERVER, "client")
        with pytest.raises(ConnectionResetError):
            await reader.read(1)
        writer.close()
        server.close()

    _simulate(main, NetworkFaults(partition_reset_rate=1.0))


def test_a_clogged_link_holds_deliveries_until_it_clears() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> int:
        server, reader, writer = await _connected_to_echo()
        network.clog("client", SERVER, 3_000)
        started_ns = loop.time_ns()
        writer.write(b"late")
        assert await reader.readexactly(4) == b"late"
        writer.close()
        server.close()
        return (loop.time_ns() - started_ns) // 1_000_000

    assert _simulate(main) == 3_000


def test_resets_reach_both_sides_as_connection_errors() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> int:
        server = await _serve_echo()
        reader, writer = await asyncio.open_connection(SERVER, PORT)
        network.faults = NetworkFaults(reset_rate=1.0)
        writer.write(b"doomed")
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        writer.close()
        server.close()
        return network.resets

    assert _simulate(main) == 1


def test_a_writer_is_paused_while_its_peer_does_not_read() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> bytes:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = loop.create_future()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result((reader, writer))

        server = await on_host(SERVER, asyncio.start_server(hold, SERVER, PORT, limit=1024))
        _, writer = await asyncio.open_connection(SERVER, PORT)
        peer_reader, peer_writer = await accepted
        payload = bytes(range(256)) * (WRITE_BUFFER_HIGH_BYTES // 64)
        writer.write(payload)
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(10)
        assert not drained.done(), "the writer ran past a peer that stopped reading"
        received = await peer_reader.readexactly(len(payload))
        await asyncio.wait_for(drained, timeout=1)
        writer.close()
        peer_writer.close()
        server.close()
        return received

    assert len(_simulate(main)) == WRITE_BUFFER_HIGH_BYTES * 4


def test_a_link_may_have_faults_of_its_own() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> tuple[int, int]:
        network.set_link_faults("client", SERVER, NetworkFaults(delay_ms_min=500, delay_ms_max=500))
        server, reader, writer = await _connected_to_echo()  # SYN 500 ms, SYN-ACK instant
        connected_ms = loop.time_ns() // 1_000_000
        writer.write(b"slow")
        assert await reader.readexactly(4) == b"slow"  # 500 ms there, the echo back instant
        round_trip_ms = loop.time_ns() // 1_000_000 - connected_ms
        writer.close()
        server.close()
        return connected_ms, round_trip_ms

    assert _simulate(main) == (500, 500)


def test_a_reader_that_pauses_receives_nothing_until_it_resumes() -> None:
    async def main(loop: SimLoop, network: SimNetwork) -> list[bytes]:
        received: list[bytes] = []
        server = await _serve_echo()

        class Collect(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                received.append(data)

        transport, _ = await loop.create_connection(Collect, SERVER, PORT)
        await asyncio.sleep(1)
        network.set_link_faults(SERVER, "client", NetworkFaults(delay_ms_min=500, delay_ms_max=500))
        transport.write(b"echo me")
        await asyncio.sleep(0.1)  # the echo is on its way back, due in 400 ms
        transport.pause_reading()
        await asyncio.sleep(60)
        assert received == [f"{SERVER}|".encode()]
        transport.resume_reading()
        await asyncio.sleep(1)
        transport.close()
        server.close()
        return received

    assert b"".join(_simulate(main)) == b"server-1|echo me"
