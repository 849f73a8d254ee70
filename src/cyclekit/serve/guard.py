"""Who may talk to the server: the ``Host`` header (DNS rebinding) and the ``Origin`` (CSRF).

A server on 127.0.0.1 is not private to this machine's user by itself. A web page on
``evil.example`` can make the browser send requests to it in two ways, and both are refused here:

* **DNS rebinding.** The attacker's name first resolves to their server, then to 127.0.0.1; the
  page's scripts then read from this server as if it were ``evil.example``. The browser still
  sends ``Host: evil.example``, so :class:`HostPolicy` accepts only the names this server is known
  by: ``localhost``, ``127.0.0.1`` and ``[::1]`` (any port), plus the names given with
  ``--allowed-host`` (``*`` accepts any, for a server behind a proxy that checks it). Others get
  ``400``.
* **Cross-site requests.** A page anywhere can POST a form or a ``fetch`` to
  ``http://127.0.0.1:8000/api/translate``; the browser marks it with the page's ``Origin``
  (or, in older browsers, only a ``Referer``). A POST whose origin is not this server's own gets
  ``403``. A request with neither header is not from a web page (curl, scripts) and is served.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable, Optional
from urllib.parse import urlsplit

from cyclekit.serve.limits import send_json_error

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def split_host(value: str) -> Optional[str]:
    """The name in a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``), or ``None``."""
    value = value.strip().lower()
    m = re.fullmatch(r"\[([0-9a-f:.]+)\](?::\d{1,5})?", value)
    if m:
        return m.group(1)
    m = re.fullmatch(r"([^:\[\]]+)(?::\d{1,5})?", value)
    if not m:
        return None
    name = m.group(1).rstrip(".")
    return name if _NAME.fullmatch(name) else None


class HostPolicy:
    """The host names a server answers to: the loopback names plus ``extra`` (``"*"``: any)."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        extra = [e.strip() for e in extra if e and e.strip()]
        self.any = "*" in extra
        self.names = set(LOCAL_HOSTS)
        for e in extra:
            if e != "*":
                self.names.add(split_host(e) or split_host(f"[{e}]") or e.lower())

    def allows(self, host_header: str) -> bool:
        if self.any:
            return True
        name = split_host(host_header or "")
        return name is not None and name in self.names

    def describe(self) -> str:
        return "any host name" if self.any else ", ".join(sorted(self.names))


def _origin_of(url: str) -> Optional[tuple[str, str]]:
    """``(scheme, host[:port])`` of an absolute http(s) URL, default ports dropped; else ``None``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return parts.scheme, host if port in (None, default) else f"{host}:{port}"


def same_origin(origin: Optional[str], referer: Optional[str], scheme: str, host_header: str) -> bool:
    """Whether a request's ``Origin`` (else ``Referer``) is this server's own; ``True`` if it has neither."""
    claimed = origin if origin is not None else referer
    if claimed is None:
        return True
    own = _origin_of(f"{scheme}://{host_header}")
    return own is not None and _origin_of(claimed) == own


class GuardMiddleware:
    """Pure ASGI middleware: ``400`` for a ``Host`` not in ``policy``, ``403`` for a cross-origin write."""

    def __init__(self, app, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get("host", "")
        who = "%s:%s" % tuple(scope.get("client") or ("?", "?"))
        if not self.policy.allows(host):
            log.info("refused a request from %s for host %r (not one of: %s)", who, host, self.policy.describe())
            await send_json_error(send, 400, (
                f"this server does not answer to the host name {host!r}: it accepts "
                f"{self.policy.describe()}; if that name is right, restart it with --allowed-host NAME"),
                close=False)
            return
        if scope["method"] in UNSAFE_METHODS and not same_origin(
                headers.get("origin"), headers.get("referer"), scope.get("scheme", "http"), host):
            claimed = headers.get("origin", headers.get("referer"))
            log.info("refused a cross-origin %s from %s (origin %r)", scope["method"], who, claimed)
            await send_json_error(send, 403, (
                f"cross-origin request refused: a page at {claimed!r} may not send images to this server; "
                "open the server's own page, or send the request without an Origin header (curl, scripts)"),
                close=False)
            return
        await self.app(scope, receive, send)
