"""POST /api/ai/queue, the hub's asynchronous queue, answered as the hub answers for a text model.

The hub's queue takes image and video models only and refuses a text-only model with
`unsupported_media_type`; this server serves a text model, so a request that names it gets that
refusal, with a pointer to the chat endpoint. The status is 415: the hub's reference writes the
error as `:unsupported_media_type`, the name (an Elixir Plug status atom) of 415. The checks run in
the hub's order: a JSON object, a model, a known model, `num_generations` in 1-4, then the kind of
model. Everything else in the body is the model's own parameters, passed through by the hub.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request

from ..auth import require_key
from ..errors import APIError, bad_request
from .deps import serving

router = APIRouter(tags=["hub queue"], dependencies=[Depends(require_key)])

MAX_GENERATIONS = 4


async def _json_object(request: Request) -> dict:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("the request body is empty: send a JSON object with a model", code="invalid_json")
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("the request body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise bad_request("the request body is nested too deeply to read", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object (send Content-Type: application/json)",
                          code="invalid_json")
    return body


def _check_num_generations(body: dict) -> None:
    if "num_generations" not in body:
        return
    n = body["num_generations"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_GENERATIONS:
        raise bad_request(f"num_generations must be an integer between 1 and {MAX_GENERATIONS}",
                          param="num_generations")


@router.post("/api/ai/queue", summary="Queue an image or video generation (hub): refused for this text model")
async def enqueue(request: Request) -> dict:
    body = await _json_object(request)
    model = body.get("model")
    if model is None or model == "":
        raise bad_request("You must specify a model to call", param="model")
    if not isinstance(model, str):
        raise bad_request("Invalid value for model: Input should be a valid string", param="model")
    loaded = serving(request).check_model(model)  # 404 "Model not found: NAME", 503 while loading
    _check_num_generations(body)
    raise APIError(415, f"{loaded.card.id} is a text model: the queue takes image and video models only. "
                        "Send it to POST /api/ai/chat/completions instead.",
                   code="unsupported_media_type", param="model")
