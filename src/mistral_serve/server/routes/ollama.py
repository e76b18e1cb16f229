"""Ollama's API: /api/chat, /api/generate, /api/tags, /api/show, /api/ps, /api/version and the
liveness probe `HEAD /` (GET / stays the workbench). Errors on these paths are in Ollama's shape,
{"error": "..."} (errors.py). What Ollama does and this server does not (embeddings, managing
models) answers 400 saying so: the request is one this server cannot serve, not a failure of
the server (a 5xx would count as one).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute

from ... import __version__
from ..auth import require_key
from ..dialects import ollama_models
from ..dialects.ollama_chat import OllamaChat
from ..dialects.ollama_generate import OllamaGenerate
from ..errors import APIError, bad_request
from ..protocol_ollama import ChatRequest, GenerateRequest, ShowRequest
from .deps import serving


class BodyIsJSON(APIRoute):
    """Ollama reads a body as JSON whatever its Content-Type says (its documentation's curl
    examples, `curl URL -d '{...}'`, send application/x-www-form-urlencoded): so do these routes."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            scope = dict(request.scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + \
                [(b"content-type", b"application/json")]
            return await handler(Request(scope, request.receive))

        return route


router = APIRouter(tags=["ollama"])
keyed = APIRouter(tags=["ollama"], dependencies=[Depends(require_key)], route_class=BodyIsJSON)


@router.head("/", summary="Liveness, as Ollama answers it (GET / is the workbench)", include_in_schema=False)
async def alive() -> Response:
    return Response(media_type="text/plain; charset=utf-8")


@keyed.post("/api/chat", summary="Chat (Ollama-compatible)")
async def chat(body: ChatRequest, request: Request, key_name: str | None = Depends(require_key)):
    dialect = OllamaChat(serving(request))
    loaded = dialect.loading(body)
    if loaded is not None:
        return loaded
    return await dialect.respond(body, request, key_name)


@keyed.post("/api/generate", summary="Generate from a prompt (Ollama-compatible)")
async def generate(body: GenerateRequest, request: Request, key_name: str | None = Depends(require_key)):
    dialect = OllamaGenerate(serving(request))
    loaded = dialect.loading(body)
    if loaded is not None:
        return loaded
    return await dialect.respond(body, request, key_name)


@keyed.get("/api/tags", summary="The served model (Ollama-compatible)")
async def tags(request: Request) -> dict:
    return ollama_models.tags(serving(request))


@keyed.post("/api/show", summary="The served model's details (Ollama-compatible)")
async def show(body: ShowRequest, request: Request) -> dict:
    name = body.model or body.name
    if not name:
        raise bad_request("Missing required parameter: model", param="model")
    return await asyncio.to_thread(ollama_models.show, serving(request), name)


@keyed.get("/api/ps", summary="The loaded model (Ollama-compatible)")
async def ps(request: Request) -> dict:
    return ollama_models.ps(serving(request))


@keyed.get("/api/version", summary="mistral-serve's version (Ollama-compatible)")
async def version() -> dict:
    return {"version": __version__}


_MANAGED = "mistral-serve serves the one model given on its command line (--model)"
UNSUPPORTED = [
    ("POST", "/api/embed", "embeddings are not supported here: this server serves a chat model, no embedding model"),
    ("POST", "/api/embeddings",
     "embeddings are not supported here: this server serves a chat model, no embedding model"),
    ("POST", "/api/pull", f"pulling models is not supported here: {_MANAGED}"),
    ("POST", "/api/push", f"pushing models is not supported here: {_MANAGED}"),
    ("POST", "/api/create", f"creating models is not supported here: {_MANAGED}"),
    ("DELETE", "/api/delete", f"deleting models is not supported here: {_MANAGED}"),
    ("POST", "/api/copy", f"copying models is not supported here: {_MANAGED}"),
    ("HEAD", "/api/blobs/{digest}", f"blobs are not supported here: {_MANAGED}"),
    ("POST", "/api/blobs/{digest}", f"blobs are not supported here: {_MANAGED}"),
]


def _refusal(message: str):
    async def refuse() -> None:
        raise APIError(400, message, code="unsupported_endpoint")
    return refuse


for _method, _path, _message in UNSUPPORTED:
    keyed.add_api_route(_path, _refusal(_message), methods=[_method], summary="Not supported here (400)")
router.include_router(keyed)
