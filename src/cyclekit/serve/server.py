"""Running the app: a listening socket, uvicorn's limits, and a background server for tests.

uvicorn bounds some things itself and :func:`uvicorn_config` sets them from :class:`Limits`:
``limit_concurrency`` (open connections; one more is answered ``503``), ``timeout_keep_alive``
(an idle kept-alive connection is closed after 5 s) and ``h11_max_incomplete_event_size`` (a
request head over 16 kB is refused). It has no deadline for the request head itself, so a
client could open connections and never finish a header line; :func:`head_timeout_protocol`
adds one (``Limits.header_timeout``). Request *bodies* are timed by
:class:`~cyclekit.serve.limits.BodyLimitMiddleware`.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from cyclekit.serve.limits import Limits

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # request line + headers; uvicorn's default, set explicitly


def head_timeout_protocol(seconds: float) -> Any:
    """uvicorn's h11 protocol, closing a connection that has not sent a complete request head in time.

    The timer starts when the connection opens and again after each response, so a client that
    trickles header bytes is cut off as surely as one that sends nothing.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self.loop.call_later(seconds, self._head_timed_out, self.cycle)

        def _head_timed_out(self, armed_cycle) -> None:
            if self.cycle is not armed_cycle or self.transport.is_closing():
                return  # a request head arrived since (it has its own response and timers)
            log.debug("closing a connection from %s: no complete request within %g s", self.client, seconds)
            try:
                self.timeout_keep_alive_handler()  # tells h11 the connection is closed, then closes it
            except Exception:  # h11 in a state that refuses ConnectionClosed: just close
                self.transport.close()

    return HeadTimeoutH11


def uvicorn_config(app, limits: Limits, **kwargs: Any):
    """A ``uvicorn.Config`` for ``app`` with the connection limits of ``limits``."""
    import uvicorn

    options: dict[str, Any] = dict(
        lifespan="on", server_header=False, http=head_timeout_protocol(limits.header_timeout),
        limit_concurrency=limits.max_connections, timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES, timeout_graceful_shutdown=5)
    options.update(kwargs)
    return uvicorn.Config(app, **options)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready socket (port 0 = any free port), so the real URL is known before serving."""
    from cyclekit.errors import UserError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port "
                        "or stop the program using it") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class BackgroundServer:
    """``with BackgroundServer(app) as url:`` serves ``app`` on a free loopback port in a thread.

    It runs with the same uvicorn limits as ``cyclekit serve`` (from the app's :class:`Limits`)
    and leaves logging to the caller: uvicorn's records go to the ``uvicorn`` loggers unformatted.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import uvicorn

        limits = getattr(getattr(getattr(app, "state", None), "service", None), "limits", None) or Limits()
        self.sock = bind_socket(host, port)
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn_config(app, limits, log_level=log_level, log_config=None))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the background server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
