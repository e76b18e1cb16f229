"""Anthropic's Messages API (errors in Anthropic's shape on these paths: errors.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request

from ..auth import require_key
from ..dialects.anthropic_messages import AnthropicMessages
from ..protocol_anthropic import CountTokensRequest, MessagesRequest
from .deps import serving

router = APIRouter(tags=["generation"])


@router.post("/v1/messages", summary="Message (Anthropic-compatible)")
async def messages(body: MessagesRequest, request: Request, key_name: str | None = Depends(require_key)):
    return await AnthropicMessages(serving(request)).respond(body, request, key_name)


@router.post("/v1/messages/count_tokens", summary="Count a message's input tokens (Anthropic-compatible)")
async def count_tokens(body: CountTokensRequest, request: Request, key_name: str | None = Depends(require_key)):
    return await asyncio.to_thread(AnthropicMessages(serving(request)).count_tokens, body)
