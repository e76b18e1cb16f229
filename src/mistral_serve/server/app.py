"""The FastAPI application: routers, error handlers, middleware, and the model's life cycle."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .browser import add_browser_guards
from .errors import (APIError, api_error_handler, http_error_handler, unexpected_error_handler,
                     validation_error_handler)
from .middleware import BodyLimit, BodyTimeout, RefuseLoneSurrogates, RequestMetrics
from .routes import chat, generations, messages, models, ollama, responses, system
from .routes import queue, tokenizer_info, workbench
from .state import Serving


def create_app(serving: Serving, load_in_background: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if serving.engine is None and serving.load_error is None and load_in_background:
            serving.start_loading()
        yield
        serving.shutdown()

    app = FastAPI(title="mistral-serve", version=__version__, lifespan=lifespan,
                  description="A self-hosted Mistral 7B server: OpenAI-compatible (/v1, with /v1/responses), Anthropic-compatible "
                              "(/v1/messages), Ollama-compatible (/api/chat, /api/generate, ...) and hub-compatible "
                              "(/api/ai) endpoints.",
                  docs_url="/api/docs", redoc_url=None)
    serving.started = int(time.time())
    app.state.serving = serving
    app.add_exception_handler(APIError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
    for router in (chat.router, responses.router, messages.router, models.router, generations.router, system.router,
                   ollama.router, workbench.router):
        app.include_router(router)
    app.include_router(queue.router)
    app.include_router(tokenizer_info.router)
    # Outermost last: the time and size limits apply while RefuseLoneSurrogates reads the body.
    app.add_middleware(RefuseLoneSurrogates)
    app.add_middleware(RequestMetrics, metrics=serving.metrics)
    app.add_middleware(BodyLimit, limit=serving.config.max_body_bytes)
    app.add_middleware(BodyTimeout, seconds=serving.config.body_timeout)
    add_browser_guards(app, serving.config)  # outermost: a refused Host or Origin reaches nothing else
    return app
