"""The model object, as the hub describes a model, with the JSON Schema of its chat request; and
the hub's list filters and search over model objects."""

from __future__ import annotations

import re
from typing import Any

from ..catalog import ModelCard
from .protocol import ChatCompletionRequest
from .state import Serving

# The hub names the endpoint relative to its /api/ai prefix ("/chat/completions", "/images/generate").
CHAT_ENDPOINT = "/chat/completions"

# The request fields in the order the workbench shows them (`x-order`), and which it shows by
# default (`basic`). The head is the hub's own page for open-mistral-7b: its "Basic parameters"
# body is model, messages, temperature, max_tokens, stream; "All parameters" adds top_p. After
# that, related fields sit together. A field missing here still gets an x-order: after these, in
# the order protocol.py declares it.
REQUEST_FIELDS: tuple[tuple[str, bool], ...] = (
    ("model", True), ("messages", True), ("temperature", True), ("max_tokens", True), ("stream", True),
    ("top_p", False), ("top_k", False), ("min_p", False), ("seed", False),
    ("stop", False), ("stop_token_ids", False), ("min_tokens", False), ("ignore_eos", False),
    ("max_completion_tokens", False),
    ("presence_penalty", False), ("frequency_penalty", False), ("repetition_penalty", False), ("logit_bias", False),
    ("n", False), ("logprobs", False), ("top_logprobs", False),
    ("response_format", False), ("guided_json", False), ("guided_regex", False), ("guided_choice", False),
    ("guided_grammar", False),
    ("tools", False), ("tool_choice", False), ("parallel_tool_calls", False),
    ("stream_options", False), ("user", False), ("add_generation_prompt", False), ("continue_final_message", False),
)

# The hub's pricing object; every rate is zero on a self-hosted server.
PRICING = {"method": "token", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "cost_per_second": None,
           "cost_per_image": None, "cost_per_second_high_res": None, "cost_per_second_with_audio": None}


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


def _add_workbench_keys(schema: dict) -> dict:
    """The hub's workbench keys: `basic` (the fields shown by default) at the top, and an integer
    `x-order` on every property; the properties are also written in that order."""
    props = schema["properties"]
    placed = dict(REQUEST_FIELDS)
    names = [name for name, _ in REQUEST_FIELDS if name in props] + [name for name in props if name not in placed]
    schema["properties"] = {name: {**props[name], "x-order": i} for i, name in enumerate(names)}
    schema["basic"] = [name for name in names if placed.get(name)]
    return schema


def chat_request_schema(card: ModelCard) -> dict:
    """JSON Schema of the chat request, from the pydantic model that validates it; the model
    field is pinned to this model's id."""
    schema = _close_pattern_objects(ChatCompletionRequest.model_json_schema())
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["properties"]["model"] = {**schema["properties"]["model"], "const": card.id, "default": card.id}
    return _add_workbench_keys(schema)


def model_object(card: ModelCard, created: int, base_url: str = "") -> dict:
    schema = chat_request_schema(card)
    logo = f"{base_url}/static/mistral-logo.svg"
    return {
        "id": card.id,
        "object": "model",
        "created": created,
        "owned_by": "mistralai" if card.developer == "Mistral AI" else card.developer,
        "display_name": card.display_name,
        "description": card.description,
        "summary": card.summary,
        "model_type": "base",  # the hub's word for a model it did not fine-tune ("custom" otherwise)
        "endpoint": CHAT_ENDPOINT,
        "capabilities": {"input": ["text"], "output": ["text"]},
        "pricing": dict(PRICING),
        "fine_tuning": None,  # null: this server fine-tunes nothing
        "deployments": [{"status": "active", "provider": "mistral-serve"}],
        "developer": {"name": card.developer, "logo": logo},
        "source_model": card.source_model,
        "image_url": logo,
        "released_at": card.released_at,
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


# ---- the hub's list filters and search ------------------------------------------------------------

def _slug(text: str) -> str:
    """'Mistral AI', 'mistral-ai' and 'mistralai' alike: the hub's developer names are lower-case slugs."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def filter_models(models: list[dict], developer_name: str | None = None, action: str | None = None) -> list[dict]:
    """The hub's list filters. `developer_name` matches the developer's name (or `owned_by`) with
    case, spaces and dashes ignored; `action` is a fine-tuning action (`text_chat_messages`, ...),
    matched against `fine_tuning.actions`, so a model that cannot be fine-tuned matches none."""
    out = models
    if developer_name:
        wanted = _slug(developer_name)
        out = [m for m in out if wanted in (_slug((m.get("developer") or {}).get("name") or ""), _slug(m["owned_by"]))]
    if action:
        out = [m for m in out if action in ((m.get("fine_tuning") or {}).get("actions") or [])]
    return out


def search_models(models: list[dict], text: str) -> list[dict]:
    """Models whose id, display name, description or developer holds every word of `text`, case
    ignored ("7b mistral" finds "Mistral 7B"); an empty text matches every model."""
    words = text.lower().split()

    def haystack(m: dict) -> str:
        parts = (m["id"], m.get("display_name"), m.get("description"), (m.get("developer") or {}).get("name"))
        return " ".join(p for p in parts if p).lower()

    return [m for m in models if all(w in haystack(m) for w in words)]
