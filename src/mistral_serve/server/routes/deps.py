"""Shared route dependencies."""

from __future__ import annotations

from fastapi import Request

from ..state import Serving


def serving(request: Request) -> Serving:
    return request.app.state.serving


def base_url(request: Request) -> str:
    """The URL the client reached this server at, without a trailing slash."""
    return str(request.base_url).rstrip("/")
