from __future__ import annotations

import asyncio
import dataclasses
import json

from fastapi import APIRouter, Depends, Query, Request

from ..auth import require_key
from ..errors import APIError
from ..store import Generation
from .deps import serving

router = APIRouter(tags=["generations"], dependencies=[Depends(require_key)])


def _public(g: Generation) -> dict:
    out = dataclasses.asdict(g)
    out["object"] = "generation"
    out["created"] = int(g.created)
    out["api_key_name"] = out.pop("key_name")
    out["time_to_first_token"] = out.pop("ttft")
    request_json, completion = out.pop("request_json"), out.pop("completion_text")
    if request_json is not None:  # stored only with --log-content
        out["messages"] = json.loads(request_json).get("messages")
    if completion is not None:
        out["completions"] = json.loads(completion)
    return out


@router.get("/api/ai/generations", summary="The log of past generation requests, newest first")
async def list_generations(request: Request, limit: int = Query(50, ge=1, le=1000),
                           before: float | None = Query(None, description="only records created before this time"),
                           after: str | None = Query(None, description="a generation id: the page after it "
                                                     "(pass the previous page's last_id)")) -> dict:
    try:  # one row more than asked tells whether another page follows
        rows = await asyncio.to_thread(serving(request).store.generations, limit + 1, before, after)
    except KeyError:
        raise APIError(400, f"unknown generation id in after: {after}", code="invalid_cursor") from None
    data = [_public(g) for g in rows[:limit]]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > limit}


@router.get("/api/ai/generations/{generation_id}", summary="One past generation request")
async def get_generation(generation_id: str, request: Request) -> dict:
    g = await asyncio.to_thread(serving(request).store.generation, generation_id)
    if g is None:
        raise APIError(404, f"Generation not found: {generation_id}", code="not_found")
    return _public(g)
