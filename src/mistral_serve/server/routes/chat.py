from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from ..auth import require_key
from ..dialects.openai_chat import OpenAIChat
from ..dialects.openai_completions import OpenAICompletions
from ..protocol import ChatCompletionRequest, CompletionRequest
from .deps import serving

router = APIRouter(tags=["generation"])


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible)")
@router.post("/api/ai/chat/completions", summary="Chat completion (hub-compatible)")
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           key_name: str | None = Depends(require_key)):
    return await OpenAIChat(serving(request)).respond(body, request, key_name)


@router.post("/v1/completions", summary="Text completion of a raw prompt (no chat template)")
async def completions(body: CompletionRequest, request: Request, key_name: str | None = Depends(require_key)):
    return await OpenAICompletions(serving(request)).respond(body, request, key_name)
