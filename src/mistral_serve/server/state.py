"""What the routes share: the loaded model and engine (once ready), the store, the metrics."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from ..config import EngineConfig, ModelConfig, ServerConfig
from ..engine.async_engine import AsyncEngine
from ..loading import LoadedModel, load
from .errors import APIError, bad_request, not_found_model
from .metrics import Metrics
from .store import Store

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Serving:
    config: ServerConfig
    model_config: ModelConfig
    engine_config: EngineConfig
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    loaded: LoadedModel | None = None
    engine: AsyncEngine | None = None
    load_error: str | None = None
    draining: bool = False
    in_flight: int = 0  # generation requests admitted and not yet finished
    started: int = 0  # unix time the app was created: the models' "created"
    on_load_done: Callable[[], None] | None = None  # called on the loading thread, success or not

    def __post_init__(self) -> None:
        self.metrics.in_flight.set_function(lambda: self.in_flight)

    # ---- life cycle ----------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model and start the engine (blocking; run on a thread at start-up)."""
        try:
            loaded = load(self.model_config)
            engine = AsyncEngine.build(loaded.model, loaded.tokenizer, self.engine_config)
        except Exception as err:
            log.error("loading the model failed: %s", err)
            self.load_error = str(err)
        else:
            self._start(loaded, engine)
        if self.on_load_done is not None:
            self.on_load_done()

    def _start(self, loaded: LoadedModel, engine: AsyncEngine) -> None:
        self.loaded = loaded
        self.engine = engine
        self.metrics.bind(queue=engine.queue_stats, cache=engine.cache_stats)
        log.info("serving %s as %r", loaded.source, loaded.card.id)

    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="mistral-serve-load", daemon=True)
        thread.start()
        return thread

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.engine.alive and not self.draining

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()

    def stop_generating(self) -> None:
        """End every running generation now (its stream gets an error event); no waiting."""
        self.draining = True
        if self.engine is not None:
            self.engine.shutdown(timeout=0)

    # ---- per request ---------------------------------------------------------------------------
    def require_ready(self) -> tuple[LoadedModel, AsyncEngine]:
        if self.draining:
            raise APIError(503, "the server is shutting down", code="shutting_down", headers={"Retry-After": "5"})
        if self.load_error is not None:
            raise APIError(503, f"the model failed to load: {self.load_error}", code="model_load_failed")
        if self.engine is None or self.loaded is None:
            raise APIError(503, "the model is still loading", code="model_loading", headers={"Retry-After": "5"})
        if not self.engine.alive:
            raise APIError(503, "the engine has stopped", code="engine_stopped")
        return self.loaded, self.engine

    def check_model(self, name: str) -> LoadedModel:
        loaded, _ = self.require_ready()
        if not name.strip():  # the hub's sentence; an empty name is no model, not an unknown one
            raise bad_request("You must specify a model to call", param="model")
        if name != loaded.card.id:
            raise not_found_model(name)
        return loaded

    @property
    def fingerprint(self) -> str:
        """The responses' system_fingerprint: what changes the numbers, here the compute dtype."""
        loaded = self.loaded
        return f"fp_mistral_serve_{str(loaded.dtype).removeprefix('torch.')}" if loaded else "fp_mistral_serve"

    @property
    def queue_limit(self) -> int:
        return self.engine_config.max_num_seqs + self.config.max_queue

    def admit(self) -> None:
        """Count a generation request in, or refuse it with 429 when the queue is full."""
        if self.in_flight >= self.queue_limit:
            raise APIError(429, f"the server is busy ({self.in_flight} requests in flight, queue limit "
                           f"{self.queue_limit}); retry shortly", code="rate_limit_exceeded",
                           headers={"Retry-After": "1"})
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
