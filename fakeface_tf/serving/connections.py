"""Connection limits for `fakeface serve` that idle sockets cannot exhaust.

uvicorn 0.54 (h11) never times out a connection that has not finished its request head, and
its `limit_concurrency` counts such sockets, so a few dozen half-open connections lock every
other client out (with a bare 503). hypercorn 0.18 (`keep_alive_timeout` runs until a request
starts) and granian 2.8 (`header_read_timeout`) would give the head time-out, but neither caps
connections per client address or lets idle ones give way, so rather than a new server this
module adds both to uvicorn's own h11 protocol (uvicorn's `http=` takes a protocol class):
- a request head must arrive within `header_timeout` seconds of connecting (or of the previous
  response on a kept-alive connection), however slowly it trickles; else the connection is
  closed (with 408 if part of a head had arrived);
- at most `max_per_client` connections per client address and `max_connections` in all: a new
  connection over either cap closes a connection of that address (resp. of anyone) that is
  waiting for a request head: the oldest one that has never had an answer, else the kept-alive
  one idle longest. So half-open sockets give way first and clients that are being served
  keep their connections; only when every counted connection is busy with a request is the
  new one answered 503 with Retry-After;
- every response made here (503, 408, uvicorn's 400 for a malformed head) carries the
  security headers and no `server` header (run uvicorn with server_header=False).
Behind a reverse proxy every client shares the proxy's address: raise `max_per_client` there.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from fakeface_tf.serving.limits import ConnectionLimits

log = logging.getLogger("fakeface.serve")
BUSY_BODY = b"server busy: too many connections; retry later"


def _head(status: int, reason: str, headers: dict[str, str], extra: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k}: {v}" for k, v in {**headers, **extra}.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Registry:
    """Every open connection, longest idle first, and how many each client address holds."""

    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.open: dict[H11Protocol, str] = {}  # order: opened or last answered, earliest first
        self.per_client: dict[str, int] = {}

    def add(self, connection: H11Protocol) -> bool:
        """Count a new connection, making room by closing idle ones; False if none gave way."""
        address = connection.address
        room = True
        if self.per_client.get(address, 0) >= self.limits.max_per_client:
            room = self._evict(lambda other, key: key == address)
        if room and len(self.open) >= self.limits.max_connections:
            room = self._evict(lambda other, key: True)
        self.open[connection] = address
        self.per_client[address] = self.per_client.get(address, 0) + 1
        return room

    def touch(self, connection: H11Protocol) -> None:
        """Move a connection that has just been answered to the back of the eviction queue."""
        if connection in self.open:
            self.open[connection] = self.open.pop(connection)

    def discard(self, connection: H11Protocol) -> None:
        address = self.open.pop(connection, None)
        if address is not None:
            left = self.per_client[address] - 1
            if left:
                self.per_client[address] = left
            else:
                del self.per_client[address]

    def _evict(self, match) -> bool:
        idle = [other for other, key in self.open.items() if match(other, key) and other.waiting_for_head]
        victim = next((other for other in idle if not other.answered), idle[0] if idle else None)
        if victim is None:
            return False
        self.discard(victim)
        victim.close_idle()
        return True


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head time-out and the connection caps. `protocol_class`
    makes one subclass per server, which holds that server's registry, limits and headers."""

    registry: _Registry
    connection_limits: ConnectionLimits
    security_headers: dict[str, str]
    timer: asyncio.TimerHandle | None = None
    address = ""
    answered = False  # has had at least one response

    @property
    def waiting_for_head(self) -> bool:
        """Open, with no request being read or answered."""
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.address = self.client[0] if self.client else ""
        if not self.registry.add(self):
            self.app = self.refuse  # answered 503 once its request head arrives
        self._arm()

    def connection_lost(self, exc) -> None:
        self.registry.discard(self)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.waiting_for_head:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.answered = True
        self.registry.touch(self)
        if not self.transport.is_closing():
            self._arm()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a malformed request head, with the security headers."""
        self.transport.write(_head(400, "Bad Request", self.security_headers, {},
                                   msg.encode("ascii", "replace")))
        self.transport.close()

    async def refuse(self, scope, receive, send) -> None:
        """The ASGI app a connection over a cap gets: 503 with Retry-After, then close."""
        log.warning("refused a connection from %s: over the connection limits", (scope.get("client") or ["?"])[0])
        response = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                    (b"retry-after", str(self.connection_limits.retry_after).encode())]
        response += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.security_headers.items()]
        await send({"type": "http.response.start", "status": 503, "headers": response})
        await send({"type": "http.response.body", "body": BUSY_BODY})

    def close_idle(self) -> None:
        """Close this connection to make room (it was only waiting for a request head)."""
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self.timer = self.loop.call_later(self.connection_limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_timed_out(self) -> None:
        self.timer = None
        if self.transport.is_closing() or not self.waiting_for_head:
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a head
            self.transport.write(_head(408, "Request Timeout", self.security_headers, {},
                                       b"the request head took too long"))
        self.transport.close()


def protocol_class(limits: ConnectionLimits, headers: dict[str, str]) -> type[GuardedH11Protocol]:
    """A uvicorn h11 protocol class enforcing `limits`; `headers` go on every response it makes.
    Each call counts its connections apart (one registry per server)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,),
                {"registry": _Registry(limits), "connection_limits": limits, "security_headers": dict(headers)})
