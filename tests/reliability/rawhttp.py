"""A tiny HTTP/1.1 client over one kept-alive socket that sends exactly the bytes it is
given (httpx normalises paths and refuses hostile headers, which is what we must test)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

READ_TIMEOUT = 30.0  # seconds; generous for a loaded CI machine


class Closed(Exception):
    """The server closed the connection instead of answering."""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    chunked: bool = False
    trailer_ok: bool = True  # a chunked body ended with its terminating 0-size chunk
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    def __init__(self, url: str, timeout: float = READ_TIMEOUT) -> None:
        hostport = url.split("://", 1)[1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        self.host = host
        self.port = int(port)
        self.sock = socket.create_connection((host, self.port), timeout=timeout)
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str | bytes,
        body: bytes | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> RawResponse:
        target = path if isinstance(path, bytes) else path.encode("latin-1")
        lines = [method.encode() + b" " + target + b" HTTP/1.1", f"Host: {self.host}:{self.port}".encode()]
        for k, v in headers or []:
            lines.append(k + b": " + v)
        if body is not None:
            lines.append(f"Content-Length: {len(body)}".encode())
            if not any(k.lower() == b"content-type" for k, _ in headers or []):
                lines.append(b"Content-Type: application/json")
        self.sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
        return self.read_response(head=method == "HEAD")

    # ------------------------------------------------------------ reading
    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise Closed("connection closed by the server")
        self._buf += data

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self._buf:
            self._fill()
        out, self._buf = self._buf.split(sep, 1)
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_response(self, head: bool = False) -> RawResponse:
        head_bytes = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        raw_headers = []
        for line in header_lines:
            k, _, v = line.partition(":")
            raw_headers.append((k.strip().lower(), v.strip()))
        headers = dict(raw_headers)
        if head or status in (204, 304) or 100 <= status < 200:
            return RawResponse(status, headers, b"", raw_headers=raw_headers)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                try:
                    size_line = self._read_until(b"\r\n")
                except Closed:
                    return RawResponse(status, headers, body, chunked=True, trailer_ok=False, raw_headers=raw_headers)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    return RawResponse(status, headers, body, chunked=True, raw_headers=raw_headers)
                try:
                    body += self._read_exact(size + 2)[:-2]
                except Closed:
                    return RawResponse(status, headers, body, chunked=True, trailer_ok=False, raw_headers=raw_headers)
        n = int(headers.get("content-length", "0"))
        return RawResponse(status, headers, self._read_exact(n), raw_headers=raw_headers)
