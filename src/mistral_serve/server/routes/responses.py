"""OpenAI's Responses API: create, count input tokens, and the stored responses (each visible only
to the API key that made it)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request

from ..auth import require_key
from ..dialects.openai_responses import OpenAIResponses
from ..errors import APIError, bad_request
from ..protocol_responses import ResponsesRequest
from .deps import serving

router = APIRouter(tags=["generation"])


@router.post("/v1/responses", summary="Response (OpenAI Responses API)")
async def create(body: ResponsesRequest, request: Request, key_name: str | None = Depends(require_key)):
    return await OpenAIResponses(serving(request)).respond(body, request, key_name)


@router.post("/v1/responses/input_tokens", summary="Count a response's input tokens (OpenAI Responses API)")
async def input_tokens(body: ResponsesRequest, request: Request, key_name: str | None = Depends(require_key)):
    return await asyncio.to_thread(OpenAIResponses(serving(request)).count_tokens, body, key_name)


@router.get("/v1/responses/{response_id}", summary="A stored response")
async def retrieve(response_id: str, request: Request, key_name: str | None = Depends(require_key)):
    found = await asyncio.to_thread(OpenAIResponses(serving(request)).stored, response_id, key_name)
    return found.response


@router.delete("/v1/responses/{response_id}", summary="Delete a stored response")
async def delete(response_id: str, request: Request, key_name: str | None = Depends(require_key)):
    if not await asyncio.to_thread(serving(request).store.delete_response, response_id, key_name):
        raise APIError(404, f"Response with id '{response_id}' not found.", code="response_not_found")
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.post("/v1/responses/{response_id}/cancel", summary="Cancel a background response")
async def cancel(response_id: str, request: Request, key_name: str | None = Depends(require_key)):
    await asyncio.to_thread(OpenAIResponses(serving(request)).stored, response_id, key_name)
    raise bad_request("only background responses can be cancelled, and this server runs none")


@router.get("/v1/responses/{response_id}/input_items", summary="A stored response's input items")
async def input_items(response_id: str, request: Request, key_name: str | None = Depends(require_key),
                      limit: int = Query(20, ge=1, le=100), order: str = Query("desc", pattern="^(asc|desc)$"),
                      after: str | None = None):
    found = await asyncio.to_thread(OpenAIResponses(serving(request)).stored, response_id, key_name)
    items = found.input_items if order == "asc" else found.input_items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise bad_request(f"after: no input item with id '{after}' in this response", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit}
