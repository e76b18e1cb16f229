from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..auth import require_key
from ..errors import bad_request, not_found_model
from ..models import filter_models, search_models, served_models
from .deps import base_url, serving

router = APIRouter(tags=["models"], dependencies=[Depends(require_key)])


@router.get("/v1/models", summary="List the served models")
@router.get("/api/ai/models", summary="List the served models (hub: developer_name and action filters)")
async def list_models(request: Request, developer_name: str | None = None, action: str | None = None) -> dict:
    models = served_models(serving(request), base_url(request))
    return {"object": "list", "data": filter_models(models, developer_name, action)}


# Before the {model_id:path} route, which would take "search" for a model id.
@router.get("/api/ai/models/search", summary="Search the served models by name (hub)")
async def find_models(request: Request, search: str | None = None, developer_name: str | None = None,
                      action: str | None = None) -> dict:
    if search is None:
        raise bad_request("Missing required parameter: search", param="search")
    models = filter_models(served_models(serving(request), base_url(request)), developer_name, action)
    return {"object": "list", "data": search_models(models, search)}


@router.get("/v1/models/{model_id:path}", summary="One model")
@router.get("/api/ai/models/{model_id:path}", summary="One model, with its json_request_schema (hub)")
async def get_model(model_id: str, request: Request) -> dict:
    for obj in served_models(serving(request), base_url(request)):
        if obj["id"] == model_id:
            return obj
    raise not_found_model(model_id)
