"""Starting the server: configuration from the command line, safety checks, uvicorn, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from typing import Iterator

import uvicorn

from ..config import EngineConfig, ModelConfig, ServerConfig
from .app import create_app
from .state import Serving
from .store import Store

log = logging.getLogger(__name__)

# After --shutdown-timeout, running generations are ended; their streams then have this long to
# deliver what they still hold, the error event and [DONE] (to a busy client, this takes time)
# before uvicorn cancels what is left and the process exits.
FLUSH_SECONDS = 3.0


class _Server(uvicorn.Server):
    """uvicorn's server, with three changes for a clean SIGTERM:
    - the app learns at once that it is draining (/health 503, new generations refused);
    - after --shutdown-timeout, running generations are ended by the engine, so their streams
      close with an error event and [DONE] rather than being cut;
    - after a graceful shutdown the process exits with status 0 instead of re-raising the
      signal (uvicorn's default makes it die by SIGTERM)."""

    def __init__(self, config: uvicorn.Config, serving: Serving) -> None:
        super().__init__(config)
        self.serving = serving

    def handle_exit(self, sig: int, frame) -> None:
        self.serving.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets=None) -> None:
        timer = asyncio.get_running_loop().call_later(self.serving.config.shutdown_timeout,
                                                      self.serving.stop_generating)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()


def serve(config: ServerConfig, model: ModelConfig, engine: EngineConfig, store: Store, verbose: bool = False) -> int:
    if not config.loopback and not config.api_key and not store.has_active_keys() and not config.allow_unauthenticated:
        raise ValueError(f"refusing to listen on {config.host} without authentication: create a key "
                         "(mistral-serve keys create --name NAME), pass --api-key, or add --allow-unauthenticated")
    serving = Serving(config, model, engine, store)
    app = create_app(serving)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level="info" if verbose else "warning",
                        timeout_graceful_shutdown=config.shutdown_timeout + FLUSH_SECONDS, timeout_keep_alive=5)
    server = _Server(uv, serving)

    def stop_on_failure() -> None:
        if serving.load_error is not None:
            server.should_exit = True

    serving.on_load_done = stop_on_failure
    print(f"mistral-serve: listening on http://{config.host}:{config.port} (loading the model...)",
          file=sys.stderr, flush=True)
    server.run()
    if serving.load_error is not None:
        print(f"mistral-serve: error: {serving.load_error}", file=sys.stderr)
        return 2
    return 0
