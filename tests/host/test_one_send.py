"""A response leaves the host in one ``send``: head and body together (``OneSendResponse``).

These drive the host's real httptools protocol (``local.host.http_protocol``) and
uvicorn's request cycle on a real event loop; only the socket is replaced, by a transport
that records each write, since one write versus two is what a socket cannot show
reliably (the kernel may hand a reader both segments at once).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from local.host import http_protocol
from tests.invoke import run_coroutine


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 7071)}.get(
            name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body (a 100 Continue when asked), answers ``hello`` with its length."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def exchange(request: bytes, answer_written: int) -> list[bytes]:
    """The writes of the protocol, once ``answer_written`` of them contain a full answer."""
    async def run() -> list[bytes]:
        loop = asyncio.get_running_loop()
        config = uvicorn.Config(app, lifespan="off", log_config=None)
        config.load()
        protocol = http_protocol(10.0)(config=config, server_state=ServerState(),
                                        app_state={}, _loop=loop)
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        for _ in range(200):
            if sum(w.count(b"HTTP/1.1") for w in transport.writes) >= answer_written:
                break
            await asyncio.sleep(0.005)
        protocol.connection_lost(None)
        return transport.writes

    return run_coroutine(run())


def test_a_responses_head_and_body_leave_in_one_write():
    writes = exchange(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n", 1)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"\r\n\r\nhello")


def test_a_head_request_gets_its_head_although_no_body_is_written():
    writes = exchange(b"HEAD /x HTTP/1.1\r\nHost: localhost\r\n\r\n", 1)
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n")


@pytest.mark.parametrize("pipelined", [1, 3])
def test_pipelined_requests_get_one_write_each(pipelined: int):
    writes = exchange(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n" * pipelined, pipelined)
    assert [w.count(b"hello") for w in writes] == [1] * pipelined


def test_a_100_continue_is_not_held_back_for_the_answer():
    writes = exchange(b"PUT /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
                      b"Expect: 100-continue\r\n\r\n", 1)
    assert writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]  # the body never came: no answer


# ------------------------------------------- over a real socket: written directly


BIG = 4 * 1024 * 1024


async def big_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers ``/big`` with 4 MiB (more than a loopback socket takes at once), anything
    else with its path: whatever order the writes take, each answer must arrive whole and
    in request order."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = bytes(range(256)) * (BIG // 256) if scope["path"] == "/big" else scope[
        "path"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def test_answers_larger_than_the_socket_takes_arrive_whole_and_in_order_to_a_slow_reader(
        tmp_path: Any) -> None:
    import socket
    import threading
    import time

    from application.settings import load
    from local.host import server_config

    settings = load({"STOCKSTREAM_DATA": str(tmp_path)})
    server = uvicorn.Server(server_config(big_app, settings, lifespan="off"))
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    serving = threading.Thread(target=server.run, kwargs={"sockets": [listening]},
                               daemon=True)
    serving.start()
    try:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listening.getsockname())
        client.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"
                       b"GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = bytearray()
        client.settimeout(10)
        while not received.endswith(b"/after"):
            chunk = client.recv(65536)
            assert chunk, "the connection closed early"
            received += chunk
            time.sleep(0.0005)  # a slow reader: the server's writes fill the socket
        first_head, _, rest = bytes(received).partition(b"\r\n\r\n")
        assert first_head.startswith(b"HTTP/1.1 200 OK")
        assert rest[:BIG] == bytes(range(256)) * (BIG // 256)
        second = rest[BIG:]
        assert second.startswith(b"HTTP/1.1 200 OK") and second.endswith(b"\r\n\r\n/after")
        client.close()
    finally:
        server.should_exit = True
        serving.join(10)
