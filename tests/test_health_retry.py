"""A health check that meets a kept-alive connection the server closed while idle asks
once more on a fresh connection instead of declaring Ollama down."""

from __future__ import annotations

import asyncio
import json

from agent.config import UpstreamSettings
from agent.upstreams.ollama import OllamaUpstream


class ClosingServer:
    """Answers the first request on each connection with keep-alive, then drops the
    connection without an answer when a second request comes on it (as a server does
    whose idle timeout fires just as the client reuses the connection)."""

    def __init__(self, drop_every_connection: bool = False) -> None:
        self.connections = 0
        self.drop_every_connection = drop_every_connection
        self.writers: list[asyncio.StreamWriter] = []

    async def aclose(self) -> None:
        for w in self.writers:
            w.close()
        for w in self.writers:
            try:
                await w.wait_closed()
            except ConnectionError:
                pass

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        served = 0
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the client closed its end
            if served >= 1 or self.drop_every_connection:
                break  # close without a word
            body = json.dumps({"version": "0.9.0"}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            served += 1
        writer.close()


async def _serve(handler: ClosingServer) -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def test_a_connection_closed_while_idle_is_not_an_outage() -> None:
    handler = ClosingServer()
    server, url = await _serve(handler)
    up = OllamaUpstream(UpstreamSettings(url=url))
    flips: list[bool] = []
    up.listeners.append(lambda _u, ok: flips.append(ok))
    try:
        assert (await up.check()).reachable is True
        assert (await up.check()).reachable is True  # the kept connection is dropped: asked again, fresh
        assert handler.connections == 2 and flips == [True]
    finally:
        await up.client.aclose()
        server.close()
        await handler.aclose()
        await server.wait_closed()


async def test_a_server_that_keeps_dropping_is_down() -> None:
    handler = ClosingServer(drop_every_connection=True)
    server, url = await _serve(handler)
    up = OllamaUpstream(UpstreamSettings(url=url))
    try:
        health = await up.check()
        assert health.reachable is False and url in health.error
        assert handler.connections == 2  # the first try and one fresh retry, no more
    finally:
        await up.client.aclose()
        server.close()
        await handler.aclose()
        await server.wait_closed()
