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


def _unauthorized(message: str, challenge: str) -> APIError:
    # RFC 6750: a 401 names the scheme the client should use.
    return APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": challenge})


async def require_key(request: Request) -> str | None:
    """FastAPI dependency: the caller's key name ('static' for --api-key), or None when the
    server is open (no key configured). Raises 401 otherwise."""
    state = request.app.state.serving
    static = state.config.api_key
    token = bearer_token(request)
    if static and token is not None and hmac.compare_digest(token.encode(), static.encode()):
        request.state.key_name = "static"
        return "static"
    keys_exist, name = state.store.check_key(token)  # one read of the store per request
    if not static and not keys_exist:
        request.state.key_name = None
        return None
    if token is None:
        raise _unauthorized("Missing API key: send it as 'Authorization: Bearer KEY' (or 'x-api-key: KEY')", "Bearer")
    if name is None:
        raise _unauthorized("Incorrect API key provided", 'Bearer error="invalid_token"')
    request.state.key_name = name
    return name
