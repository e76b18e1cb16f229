from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ...tokenizer import ChatTemplateError
from ..auth import require_key
from ..errors import bad_request, not_found_model
from ..protocol import DetokenizeRequest, TokenizeRequest
from .deps import serving
from .tokenizer_info import control_token_prompt

router = APIRouter(tags=["system"])


@router.get("/health", summary="200 once the model is loaded; 503 while loading or shutting down")
async def health(request: Request) -> JSONResponse:
    s = serving(request)
    if s.ready:
        return JSONResponse({"status": "ok", "model": s.loaded.card.id})
    state = "draining" if s.draining else "failed" if s.load_error else "loading"
    return JSONResponse({"status": state, "detail": s.load_error}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(serving(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _tokenizer(request: Request, model: str | None):
    loaded, _ = serving(request).require_ready()
    if model is not None and model != loaded.card.id:
        raise not_found_model(model)
    return loaded


@router.post("/tokenize", summary="Token ids of a raw prompt or of a conversation", dependencies=[Depends(require_key)])
async def tokenize(body: TokenizeRequest, request: Request) -> dict:
    loaded = _tokenizer(request, body.model)
    if (body.prompt is None) == (body.messages is None):
        raise bad_request("give exactly one of prompt or messages", param="prompt")
    if body.messages is not None:
        try:
            ids = loaded.tokenizer.encode_chat([m.model_dump(exclude_none=True) for m in body.messages])
        except ChatTemplateError as err:
            raise bad_request(str(err), param="messages") from None
    else:  # a control token's spelling alone is that token (see tokenizer_info.py)
        ids = (control_token_prompt(loaded.tokenizer, body.prompt, body.add_special_tokens)
               or loaded.tokenizer.encode(body.prompt, bos=body.add_special_tokens))
    return {"tokens": ids, "count": len(ids), "max_model_len": serving(request).engine.max_model_len}


@router.post("/detokenize", summary="Text of token ids", dependencies=[Depends(require_key)])
async def detokenize(body: DetokenizeRequest, request: Request) -> dict:
    loaded = _tokenizer(request, body.model)
    bad = [t for t in body.tokens if t >= loaded.tokenizer.vocab_size]
    if bad:
        raise bad_request(f"token id {bad[0]} is outside the vocabulary (size {loaded.tokenizer.vocab_size})",
                          param="tokens")
    return {"prompt": loaded.tokenizer.decode(body.tokens)}
