"""The browser side: the workbench at `/`, its static files, and the model pages at `/docs/models/...`.

These pages are public whatever keys are configured: they hold no data. The workbench calls the
API from the browser with the key the user types (sent as `Authorization: Bearer`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from ...workbench import STATIC_DIR
from ...workbench.model_page import (render_model_index, render_model_page, render_not_found,
                                     render_unavailable)
from ..errors import APIError
from ..models import served_models
from .deps import base_url, serving

router = APIRouter(include_in_schema=False)

# Same-origin only: no external script, style, font or connection; no inline script.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
               ".ico": "image/x-icon", ".json": "application/json", ".txt": "text/plain; charset=utf-8"}


def _not_found(request: Request) -> APIError:
    return APIError(404, f"Not found: {request.url.path}", code="not_found")


@router.get("/")
async def workbench_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type=MEDIA_TYPES[".html"], headers=PAGE_HEADERS)


@router.get("/static/{path:path}")
async def static_file(path: str, request: Request) -> FileResponse:
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file() or target.suffix not in MEDIA_TYPES:
        raise _not_found(request)
    return FileResponse(target, media_type=MEDIA_TYPES[target.suffix],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "mistral-logo.svg", media_type=MEDIA_TYPES[".svg"])


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


@router.get("/docs/models")
async def model_index(request: Request) -> Response:
    try:
        models = served_models(serving(request), base_url(request))
    except APIError as err:
        return _html(render_unavailable(err.message), err.status)
    return _html(render_model_index(models))


@router.get("/docs/models/{model_id:path}")
async def model_page(model_id: str, request: Request) -> Response:
    try:
        models = served_models(serving(request), base_url(request))
    except APIError as err:
        return _html(render_unavailable(err.message), err.status)
    for model in models:
        if model["id"] == model_id:
            return _html(render_model_page(model, base_url(request)))
    return _html(render_not_found(model_id, models), 404)

