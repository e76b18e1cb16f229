"""Shared route dependencies."""

from __future__ import annotations

from fastapi import Request

from ..state import Serving


def serving(request: Request) -> Serving:
    return request.app.state.serving
