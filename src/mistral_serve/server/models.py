"""The model object, as the hub describes a model, with the JSON Schema of its chat request."""

from __future__ import annotations

from typing import Any

from ..catalog import ModelCard
from .protocol import ChatCompletionRequest
from .state import Serving

CHAT_ENDPOINT = "/api/ai/chat/completions"


def _close_pattern_objects(node: Any) -> Any:
    """pydantic refuses map keys that miss their pattern; say so in the schema too."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_objects(value)
    return node


def chat_request_schema(card: ModelCard) -> dict:
    """JSON Schema of the chat request, from the pydantic model that validates it; the model
    field is pinned to this model's id."""
    schema = _close_pattern_objects(ChatCompletionRequest.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["properties"]["model"] = {**schema["properties"]["model"], "const": card.id, "default": card.id}
    return schema


def model_object(card: ModelCard, created: int, base_url: str = "") -> dict:
    schema = chat_request_schema(card)
    return {
        "id": card.id,
        "object": "model",
        "created": created,
        "owned_by": "mistralai" if card.developer == "Mistral AI" else card.developer,
        "display_name": card.display_name,
        "description": card.description,
        "summary": card.summary,
        "model_type": "text_generation",
        "endpoint": CHAT_ENDPOINT,
        "capabilities": {"input": ["text"], "output": ["text"]},
        "pricing": {"input_per_million_tokens": 0.0, "output_per_million_tokens": 0.0, "currency": "USD",
                    "note": "self-hosted"},
        "deployments": [{"status": "active", "provider": "mistral-serve"}],
        "developer": {"name": card.developer, "logo": f"{base_url}/static/mistral-logo.svg"},
        "parameter_count": card.parameter_count,
        "parameter_count_label": card.parameter_label,
        "context_length": card.context_length,
        "mixture_of_experts": card.mixture_of_experts,
        "multilingual": card.multilingual,
        "quantization": card.quantization,
        "chat_template": card.chat_template,
        "license": card.license,
        "demo": card.demo,
        "docs_url": f"{base_url}/docs/models/{card.id}",
        "request_schema": schema,
        "json_request_schema": schema,
    }


def served_models(serving: Serving, base_url: str = "") -> list[dict]:
    """The model objects of what this server serves (503 until the model is loaded)."""
    loaded, _ = serving.require_ready()
    return [model_object(loaded.card, serving.started, base_url)]
