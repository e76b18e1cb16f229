"""What keeps a browser from being turned against the server: the Host check (DNS rebinding) and
the Origin check with CORS.

DNS rebinding: a web page on evil.example makes its own name resolve to 127.0.0.1, and its
scripts then reach a loopback server as "same origin". The request still says `Host:
evil.example`, so a server listening on a loopback address answers only Host names that are
loopback ones (localhost, *.localhost, 127.x.x.x, [::1]) or in --allowed-hosts (Ollama's fix for
CVE-2024-28224). A server on another address answers any Host unless --allowed-hosts is given.

Origins: a browser sends `Origin` on cross-origin requests. Pages of the server's own origin
(the workbench) and of --allowed-origins are served, with CORS headers for the latter
(preflights answered by Starlette's CORSMiddleware); any other origin is refused with 403 before
the request does anything, since a "simple" cross-origin POST would run even though its page
cannot read the answer. Clients that are not browsers send no Origin and are not affected.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import ServerConfig
from .errors import APIError, error_response


def host_name(host: str) -> str:
    """A Host header's name without its port, lower case ("[::1]:8000" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class BrowserGuard:
    """Refuse (403) a Host this server does not answer to and an Origin it does not serve."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.hosts = {host_name(h) for h in config.allowed_hosts}
        self.any_host = "*" in config.allowed_hosts
        self.check_hosts = config.loopback or bool(config.allowed_hosts)
        self.origins = {o.rstrip("/").lower() for o in config.allowed_origins}
        self.any_origin = "*" in config.allowed_origins

    def host_allowed(self, host: str | None) -> bool:
        if host is None or not self.check_hosts or self.any_host:
            return True  # no Host (HTTP/1.0): no browser sent it
        name = host_name(host)
        return is_loopback_name(name) or name in self.hosts

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        if origin is None or self.any_origin or origin.rstrip("/").lower() in self.origins:
            return True
        own = urlsplit(origin).netloc.lower()
        return bool(own) and host is not None and own == host.strip().lower()  # the server's own pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in (b"host", b"origin")}
        host, origin = headers.get(b"host"), headers.get(b"origin")
        if not self.host_allowed(host):
            err = APIError(403, f"Host {host!r} is not allowed: this server answers its loopback names; "
                                "start it with --allowed-hosts NAME to be reached by another name",
                           code="host_not_allowed")
            return await error_response(err, scope["path"])(scope, receive, send)
        if not self.origin_allowed(origin, host):
            err = APIError(403, f"Origin {origin!r} is not allowed: start the server with --allowed-origins "
                                "ORIGIN to let that site's pages call it", code="origin_not_allowed")
            return await error_response(err, scope["path"])(scope, receive, send)
        await self.app(scope, receive, send)


def add_browser_guards(app, config: ServerConfig) -> None:
    """CORS for the allowed origins, inside the Host and Origin checks (add after the other middleware:
    the last added is the outermost)."""
    if config.allowed_origins:
        origins = ["*"] if "*" in config.allowed_origins else list(config.allowed_origins)
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["Retry-After"], max_age=600)
    app.add_middleware(BrowserGuard, config=config)
