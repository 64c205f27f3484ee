"""The fault proxy (streamhouse.testing.fault_proxy) behaves as toxiproxy documents, driven
through toxiproxy-python as a real toxiproxy would be (raw HTTP only for error statuses):
each toxic's effect on a loopback echo server's traffic, toxics changing on open connections,
enable/disable, reset, populate, the API's errors, and the process stopping cleanly. Wall
times are only ever bounded below: a toxic slows things down by at least its setting."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists
from toxiproxy.proxy import Proxy

from streamhouse.testing.fault_proxy import FaultProxy, running_fault_proxy
from streamhouse.testing.network import free_loopback_port
from streamhouse.testing.server_process import start_http_server, stop_process

SOCKET_TIMEOUT_S = 5.0
QUIET_S = 0.3  # how long "nothing arrives" is watched for


class EchoServer:
    """A loopback TCP server that echoes what it gets and counts the bytes it received."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.received_bytes = 0
        self._lock = threading.Lock()
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._clients.append(client)
            threading.Thread(target=self._echo, args=(client,), daemon=True).start()

    def _echo(self, client: socket.socket) -> None:
        with client:
            try:
                while data := client.recv(65536):
                    with self._lock:
                        self.received_bytes += len(data)
                    client.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._listener.close()
        for client in self._clients:
            client.close()


@pytest.fixture(scope="module")
def fault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    with running_fault_proxy(tmp_path_factory.mktemp("fault-proxy")) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def echo(fault: FaultProxy) -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    fault.client.destroy_all()
    server.close()


@pytest.fixture
def proxy(fault: FaultProxy, echo: EchoServer) -> Proxy:
    return fault.proxy("echo", echo.address)


def connect(fault: FaultProxy, proxy: Proxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", fault.listen_port(proxy)), SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = sock.recv(size - len(data))
        if not piece:
            break
        data += piece
    return data


def round_trip_s(sock: socket.socket, message: bytes) -> float:
    started = time.monotonic()
    sock.sendall(message)
    assert receive(sock, len(message)) == message
    return time.monotonic() - started


def assert_quiet(sock: socket.socket) -> None:
    sock.settimeout(QUIET_S)
    with pytest.raises(TimeoutError):
        sock.recv(100)
    sock.settimeout(SOCKET_TIMEOUT_S)


def test_a_proxy_listens_on_the_real_address_and_forwards(
    fault: FaultProxy, echo: EchoServer, proxy: Proxy
) -> None:
    assert b"version" in fault.client.version()
    assert fault.listen_port(proxy) != 0
    listed = fault.client.proxies()["echo"]
    assert (listed.listen, listed.upstream, listed.enabled) == (proxy.listen, echo.address, True)
    with connect(fault, proxy) as sock:
        round_trip_s(sock, b"hello")


def test_latency_delays_each_round_trip_and_changes_on_open_connections(
    fault: FaultProxy, proxy: Proxy
) -> None:
    with connect(fault, proxy) as sock:
        proxy.add_toxic(type="latency", attributes={"latency": 200})
        assert proxy.toxics()["latency_downstream"].attributes == {"latency": 200, "jitter": 0}
        assert round_trip_s(sock, b"ping") >= 0.2
        fault.update_toxic(proxy, "latency_downstream", {"latency": 400})
        assert round_trip_s(sock, b"ping") >= 0.4
        proxy.destroy_toxic("latency_downstream")
        round_trip_s(sock, b"still whole")


def test_bandwidth_takes_at_least_size_over_rate(fault: FaultProxy, proxy: Proxy) -> None:
    proxy.add_toxic(type="bandwidth", attributes={"rate": 100})  # 100 KB/s downstream
    message = bytes(range(256)) * 200  # 51,200 bytes: at least 0.512 s
    with connect(fault, proxy) as sock:
        assert round_trip_s(sock, message) >= len(message) / 100_000


def test_slow_close_delays_the_close(fault: FaultProxy, proxy: Proxy) -> None:
    proxy.add_toxic(type="slow_close", attributes={"delay": 300})
    with connect(fault, proxy) as sock:
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)  # the echo server closes in turn
        assert sock.recv(100) == b""
        assert time.monotonic() - started >= 0.3


def test_timeout_passes_nothing_then_closes(fault: FaultProxy, proxy: Proxy) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 300})
    started = time.monotonic()
    with connect(fault, proxy) as sock:
        sock.sendall(b"lost")
        assert sock.recv(100) == b""
        assert time.monotonic() - started >= 0.3


def test_timeout_zero_holds_the_connection_until_removed(fault: FaultProxy, proxy: Proxy) -> None:
    with connect(fault, proxy) as sock:
        proxy.add_toxic(type="timeout", attributes={"timeout": 0})
        sock.sendall(b"dropped")
        assert_quiet(sock)
        proxy.destroy_toxic("timeout_downstream")
        # As toxiproxy: what arrived meanwhile was dropped; the connection carries on.
        assert round_trip_s(sock, b"flows again") >= 0


def test_reset_peer_resets_the_connection(fault: FaultProxy, proxy: Proxy) -> None:
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 200})
    with connect(fault, proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"reset me")
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
        assert time.monotonic() - started >= 0.2


def test_slicer_delivers_the_bytes_intact_in_several_reads(fault: FaultProxy, proxy: Proxy) -> None:
    attributes = {"average_size": 10, "size_variation": 4, "delay": 20_000}
    proxy.add_toxic(type="slicer", attributes=attributes)
    message = bytes(range(100))
    with connect(fault, proxy) as sock:
        sock.sendall(message)
        reads = []
        while sum(map(len, reads)) < len(message):
            reads.append(sock.recv(1000))
            assert reads[-1], "closed early"
    assert b"".join(reads) == message
    assert len(reads) >= 3


def test_limit_data_closes_after_exactly_the_limit(fault: FaultProxy, proxy: Proxy) -> None:
    proxy.add_toxic(type="limit_data", attributes={"bytes": 10})
    with connect(fault, proxy) as sock:
        sock.sendall(b"0123456789abcdefghij")
        assert receive(sock, 100) == b"0123456789"


def test_toxicity_zero_never_applies(fault: FaultProxy, proxy: Proxy) -> None:
    proxy.add_toxic(type="timeout", attributes={"timeout": 0}, toxicity=0.0)
    for _ in range(5):
        with connect(fault, proxy) as sock:
            round_trip_s(sock, b"untouched")


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_a_toxic_acts_on_its_stream_only(
    fault: FaultProxy, echo: EchoServer, proxy: Proxy, stream: str
) -> None:
    proxy.add_toxic(type="timeout", stream=stream, attributes={"timeout": 0})
    assert list(proxy.toxics()) == [f"timeout_{stream}"]
    with connect(fault, proxy) as sock:
        sock.sendall(b"12345")
        assert_quiet(sock)
    # upstream is client -> server: the server never heard; downstream: it did, we did not.
    assert echo.received_bytes == (0 if stream == "upstream" else 5)


def test_toxic_changes_mid_stream_keep_every_byte_in_order(fault: FaultProxy, proxy: Proxy) -> None:
    message = bytes(range(256)) * 8192  # 2 MiB, more than the proxy buffers
    with connect(fault, proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(message,))
        sender.start()
        received = bytearray()
        for _ in range(6):
            proxy.add_toxic(type="latency", name="lag", attributes={"latency": 5})
            proxy.add_toxic(type="slicer", attributes={"average_size": 4096, "delay": 10})
            received += sock.recv(65536)
            proxy.destroy_toxic("lag")
            proxy.destroy_toxic("slicer_downstream")
        received += receive(sock, len(message) - len(received))
        sender.join()
    assert received == message


def test_disable_closes_connections_and_refuses_until_enabled(
    fault: FaultProxy, proxy: Proxy
) -> None:
    port = fault.listen_port(proxy)
    with connect(fault, proxy) as sock:
        proxy.disable()
        assert sock.recv(100) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), SOCKET_TIMEOUT_S)
    assert fault.client.proxies()["echo"].enabled is False
    proxy.enable()
    with connect(fault, proxy) as sock:
        round_trip_s(sock, b"back on the same port")


def test_reset_enables_every_proxy_and_removes_every_toxic(
    fault: FaultProxy, proxy: Proxy, echo: EchoServer
) -> None:
    other = fault.proxy("other", echo.address)
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    other.disable()
    assert fault.client.reset()
    for each in (proxy, other):
        assert fault.client.proxies()[each.name].enabled is True
        assert each.toxics() == {}
        with connect(fault, each) as sock:
            round_trip_s(sock, b"clean")


def test_populate_creates_keeps_and_replaces(fault: FaultProxy, echo: EchoServer) -> None:
    listen = f"127.0.0.1:{free_loopback_port()}"
    entry = {"name": "populated", "listen": listen, "upstream": echo.address, "enabled": True}
    assert [p["listen"] for p in fault.populate([entry])] == [listen]
    Proxy(**entry).add_toxic(type="latency", attributes={"latency": 1})
    fault.populate([entry])  # same fields: kept, toxic and all
    assert list(fault.client.proxies()["populated"].toxics()) == ["latency_downstream"]
    moved = {**entry, "upstream": f"127.0.0.1:{free_loopback_port()}"}
    fault.populate([moved])  # a new upstream: replaced
    replaced = fault.client.proxies()["populated"]
    assert (replaced.upstream, replaced.toxics()) == (moved["upstream"], {})
    # toxiproxy-python's own populate (one create per proxy) works against it too
    fault.client.populate([{**entry, "name": "by-client", "listen": "127.0.0.1:0"}])
    assert "by-client" in fault.client.proxies()


def _api(fault: FaultProxy, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, fault.url + path, timeout=SOCKET_TIMEOUT_S, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/proxies/missing", None, 404),
        ("DELETE", "/proxies/missing", None, 404),
        ("GET", "/proxies/echo/toxics/missing", None, 404),
        ("DELETE", "/proxies/echo/toxics/missing", None, 404),
        ("GET", "/no/such/path", None, 404),
        ("POST", "/proxies", {"name": "echo", "upstream": "127.0.0.1:1"}, 409),
        ("POST", "/proxies", {"name": "x"}, 400),
        ("POST", "/proxies", {"name": "x", "upstream": "no-port"}, 400),
        ("POST", "/proxies", {"name": "x", "upstream": "h:1", "listen": "h:99999"}, 400),
        ("POST", "/proxies", [1, 2], 400),
        ("POST", "/proxies/echo", {"enabled": "yes"}, 400),
        ("POST", "/proxies/echo/toxics", {"type": "gremlin"}, 400),
        ("POST", "/proxies/echo/toxics", {"type": "latency", "stream": "sideways"}, 400),
        ("POST", "/proxies/echo/toxics", {"type": "latency", "toxicity": 2}, 400),
        ("POST", "/proxies/echo/toxics", {"type": "latency", "attributes": {"lag": 1}}, 400),
        ("POST", "/proxies/echo/toxics", {"type": "latency", "attributes": {"latency": -1}}, 400),
        (
            "POST",
            "/proxies/echo/toxics",
            {"type": "timeout", "attributes": {"timeout": 2**64}},
            400,
        ),
        ("POST", "/proxies/echo/toxics", {"type": "slicer", "attributes": {"delay": "1"}}, 400),
        ("POST", "/proxies/echo/toxics/latency_downstream", [], 404),
        ("POST", "/populate", {"name": "not a list"}, 400),
        ("POST", "/populate", [{"name": "x", "upstream": "h:1"}, {"name": "y"}], 400),
    ],
)
def test_bad_requests_get_toxiproxys_statuses(
    fault: FaultProxy, proxy: Proxy, method: str, path: str, body: object, status: int
) -> None:
    answer = _api(fault, method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json() == {"error": answer.json()["error"], "status": status}
    assert answer.json()["error"]


def test_bad_json_and_the_clients_exceptions(fault: FaultProxy, proxy: Proxy) -> None:
    answer = _api(fault, "POST", "/proxies", data=b"{not json")
    assert answer.status_code == 400 and answer.json()["status"] == 400
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="gremlin")
    with pytest.raises(ProxyExists):
        fault.client.create(upstream="127.0.0.1:1", name="echo")
    with pytest.raises(NotFound):
        proxy.destroy_toxic("missing")
    assert _api(fault, "POST", "/proxies/echo/toxics", json={"type": "latency"}).status_code == 409


def test_a_restarted_server_leaves_nothing_behind(fault: FaultProxy, echo: EchoServer) -> None:
    with running_fault_proxy() as second:
        made = second.proxy("left", echo.address)
        port = second.listen_port(made)
        with socket.create_connection(("127.0.0.1", port), SOCKET_TIMEOUT_S):
            pass
    for gone_port in (port, int(second.url.rpartition(":")[2])):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gone_port), SOCKET_TIMEOUT_S)
    assert "echo" not in fault.client.proxies()  # the module's server was left as it was


def test_the_process_exits_zero_on_sigterm_and_has_help() -> None:
    module = "streamhouse.testing.fault_proxy"
    helped = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True)
    assert helped.returncode == 0 and b"--port" in helped.stdout

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]

    process, _ = start_http_server("fault-proxy", command, None, probe_path="/version")
    try:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        stop_process(process)
