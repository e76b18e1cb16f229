"""ASGI middleware: body size and time limits, refusal of text that is not Unicode, and request
metrics (pure ASGI, safe for streaming)."""

from __future__ import annotations

import asyncio
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, error_response, http_error_handler
from .metrics import Metrics
from .surrogates import lone_surrogate


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, by Content-Length or as they stream in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        error = APIError(413, f"the request body is larger than {self.limit} bytes", code="request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await error_response(error, scope["path"])(scope, receive, send)
        seen = 0

        async def limited_receive() -> Message:
            # A body without Content-Length (chunked) is counted as it arrives; the route's
            # error handlers turn the HTTPException into the 413 body of its path family.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, error.message)
            return message

        await self.app(scope, limited_receive, send)


class BodyTimeout:
    """Answer 408 (and close the connection) when a request body takes more than `seconds` to
    arrive in full, counted from the first read: a client trickling its body byte by byte holds a
    connection, never the server (each request waits on its own task)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline: float | None = None
        body_done = False

        async def timed_receive() -> Message:
            # Only the body is timed: once it is in, receive() waits for the client to leave
            # (streaming responses listen for that), which may rightly take as long as it takes.
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {self.seconds:g} seconds",
                                    headers={"Connection": "close"}) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


class RefuseLoneSurrogates:
    """Answer 400 to a body holding a \\u escape of an unpaired UTF-16 surrogate (see surrogates.py):
    parsed, it would be a str that no UTF-8 encoder accepts. The body is read here in full (within
    the size and time limits of the middleware around this one) and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        chunks = []
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client left before its body was in: nobody to answer
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except HTTPException as exc:  # over the size or time limit: answered as the routes would
            return await (await http_error_handler(Request(scope), exc))(scope, receive, send)
        body = b"".join(chunks)
        at = lone_surrogate(body)
        if at is not None:
            error = APIError(400, f"the request body holds an unpaired UTF-16 surrogate escape at byte {at} "
                                  f"({body[at:at + 6].decode('ascii')}): that is not Unicode text", code="invalid_json")
            return await error_response(error, scope["path"])(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RequestMetrics:
    """Count requests by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status: int | None = None

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
            if status is None:
                status = 499  # no answer and no error: the client left before one was due
        except BaseException:
            status = status or 500
            raise
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(route=label, status=str(status)).inc()
