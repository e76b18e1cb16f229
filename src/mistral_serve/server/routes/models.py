from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..auth import require_key
from ..errors import not_found_model
from ..models import served_models
from .deps import base_url, serving

router = APIRouter(tags=["models"], dependencies=[Depends(require_key)])


@router.get("/v1/models", summary="List the served models")
@router.get("/api/ai/models", summary="List the served models (hub)")
async def list_models(request: Request) -> dict:
    return {"object": "list", "data": served_models(serving(request), base_url(request))}


@router.get("/v1/models/{model_id:path}", summary="One model")
@router.get("/api/ai/models/{model_id:path}", summary="One model, with its json_request_schema (hub)")
async def get_model(model_id: str, request: Request) -> dict:
    for obj in served_models(serving(request), base_url(request)):
        if obj["id"] == model_id:
            return obj
    raise not_found_model(model_id)
