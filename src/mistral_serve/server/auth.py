"""Who is calling: a bearer token checked against the static key and the stored keys."""

from __future__ import annotations

import hmac

from fastapi import Request

from .errors import APIError


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def require_key(request: Request) -> str | None:
    """FastAPI dependency: the caller's key name ('static' for --api-key), or None when the
    server is open (no key configured). Raises 401 otherwise."""
    state = request.app.state.serving
    static = state.config.api_key
    open_server = not static and not state.store.has_active_keys()
    token = bearer_token(request)
    if open_server:
        request.state.key_name = None
        return None
    if token is None:
        raise APIError(401, "Missing API key: send it as 'Authorization: Bearer KEY'", code="invalid_api_key")
    if static and hmac.compare_digest(token.encode(), static.encode()):
        request.state.key_name = "static"
        return "static"
    name = state.store.check_key(token)
    if name is None:
        raise APIError(401, "Incorrect API key provided", code="invalid_api_key")
    request.state.key_name = name
    return name
