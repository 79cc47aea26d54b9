"""Limits on connections that uvicorn leaves open: slow clients, huge headers, floods.

uvicorn times out only idle keep-alive connections. A client that connects and sends nothing, or half
its headers, holds its connection (and a file descriptor) for good, and enough of them starve every
other client. :class:`GuardedProtocol` (uvicorn's httptools protocol, plus three rules) closes a
connection whose headers are not complete ``HEADER_TIMEOUT`` seconds after it opened or after its
request's first byte, answers 431 to headers over ``MAX_HEADER_BYTES``, and, past
``MAX_CONNECTIONS`` per worker, closes the connection that has waited longest for its headers, so a
flood costs the slowest clients their connection rather than everyone theirs. Bodies are timed in
uploads.py (``BODY_TIMEOUT``), where they are read.
"""

from __future__ import annotations

import json
import resource

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Seconds a client has to send its complete headers.
HEADER_TIMEOUT = 10.0
#: Bytes of request line and headers accepted, as nginx's default large_client_header_buffers.
MAX_HEADER_BYTES = 32 * 1024
#: Open connections per worker before the slowest are closed.
MAX_CONNECTIONS = 2000


def _answer(status: str, code: str, detail: str) -> bytes:
    """A complete HTTP response with the API's JSON error body, closing the connection."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


_TOO_LARGE = _answer(
    "431 Request Header Fields Too Large",
    "too_large",
    f"the request headers are over {MAX_HEADER_BYTES} bytes",
)
_TOO_SLOW = _answer("408 Request Timeout", "timeout", "the request headers came too slowly")


def raise_file_limit() -> None:
    """Let the process hold as many connections as the system allows it (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a header size limit and a connection bound."""

    #: This worker's connections still waiting for their headers, oldest first (dicts keep order).
    _waiting: dict[GuardedProtocol, None] = {}

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS and self._waiting:
            oldest = next(iter(self._waiting))
            oldest._close(None)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self in self._waiting:  # still no complete headers after this chunk
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._close(_TOO_LARGE)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self not in self._waiting:  # the next request on a kept-alive connection
            self._await_headers()

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        self._header_bytes = 0
        self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, self._close, _TOO_SLOW)
        self._waiting[self] = None

    def _stop_waiting(self) -> None:
        if self in self._waiting:
            del self._waiting[self]
            self._header_deadline.cancel()

    def _close(self, answer: bytes | None) -> None:
        self._stop_waiting()
        if not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()
