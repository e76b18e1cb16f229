"""One error type for the whole API, rendered in the shape each path family expects.

/v1/* (OpenAI):  {"error": {"message", "type", "param", "code"}}
/api/ai/* (hub): {"error": {"type", "title", "detail"}, "status": "error", "status_message": TYPE}
/v1/messages* (Anthropic): {"type": "error", "error": {"type", "message"}}
/api/* but /api/ai (Ollama): {"error": "message"}
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# status -> (OpenAI type, hub type)
_TYPES = {
    400: ("invalid_request_error", "invalid_params"),
    401: ("invalid_request_error", "unauthenticated"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "resource_not_found"),
    405: ("invalid_request_error", "invalid_params"),
    408: ("invalid_request_error", "invalid_params"),
    413: ("invalid_request_error", "invalid_params"),
    415: ("invalid_request_error", "unsupported_media_type"),
    422: ("invalid_request_error", "invalid_params"),
    429: ("rate_limit_error", "unknown_error"),
    503: ("server_error", "unknown_error"),
}

# status -> Anthropic's error type (other 4xx: invalid_request_error; 5xx: api_error)
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def openai_body(self) -> dict:
        kind = _TYPES.get(self.status, ("server_error", "unknown_error"))[0]
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def hub_body(self) -> dict:
        kind = _TYPES.get(self.status, ("server_error", "unknown_error"))[1]
        title = HTTPStatus(self.status).phrase if self.status in HTTPStatus._value2member_map_ else "Error"
        return {"error": {"type": kind, "title": title, "detail": self.message},
                "status": "error", "status_message": kind}

    def anthropic_body(self) -> dict:
        kind = _ANTHROPIC_TYPES.get(self.status, "invalid_request_error" if 400 <= self.status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": self.message}}

    def ollama_body(self) -> dict:
        return {"error": self.message}

    def body_for(self, path: str) -> dict:
        if is_hub_path(path):
            return self.hub_body()
        if path.startswith("/api/"):
            return self.ollama_body()
        if path == "/v1/messages" or path.startswith("/v1/messages/"):
            return self.anthropic_body()
        return self.openai_body()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found_model(name: str) -> APIError:
    return APIError(404, f"Model not found: {name}", code="model_not_found", param="model")


def error_response(err: APIError, path: str) -> JSONResponse:
    return JSONResponse(err.body_for(path), status_code=err.status, headers=err.headers)


# Errors that only say "this union branch wants another type": the least informative kind.
_TYPE_MISMATCH = {"string_type", "list_type", "dict_type", "model_type", "model_attributes_type", "int_type",
                  "float_type", "bool_type", "none_required", "is_instance_of", "literal_error"}


def _location(loc: tuple, body: object) -> str:
    """Dotted path of an error inside the body, without pydantic's union branch labels
    ('stop.list[str].5' -> 'stop.5'): a part is kept only if the body really has it."""
    parts, node = [], body
    for i, part in enumerate(loc[1:] if loc and loc[0] == "body" else loc):
        last = i == len(loc) - 2 if loc and loc[0] == "body" else i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (isinstance(node, dict) and last):  # a missing or unknown key is kept
            continue  # a union branch label
        parts.append(str(part))
    return ".".join(parts) or "body"


def is_hub_path(path: str) -> bool:
    return path.startswith("/api/ai")


def hub_wording(param: str, kind: str, body: object) -> str | None:
    """The hub's own sentence for its two commonest mistakes, where it has one: no model (absent
    or null), and an empty message list. The OpenAI paths keep OpenAI's wording."""
    if param == "model" and (kind == "missing" or (isinstance(body, dict) and body.get("model", "") is None)):
        return "You must specify a model to call"
    if param == "messages" and kind == "too_short":
        return "Messages array cannot be empty"
    return None


def validation_error(exc: RequestValidationError, hub: bool = False) -> APIError:
    """The most telling problem of a validation failure, as one readable sentence naming the
    parameter (in the hub's words where `hub` and it has them). Of several errors at the same place
    (one per union branch), a specific one ("at most 4 items") beats "should be a valid string"."""
    errors = exc.errors()
    if not errors:
        return bad_request("invalid request body")
    body = getattr(exc, "body", None)
    located = [(_location(tuple(e.get("loc", ())), body), e) for e in errors]
    param, first = located[0]
    same_place = [e for p, e in located if p == param]
    first = next((e for e in same_place if e.get("type") not in _TYPE_MISMATCH), first)
    kind = first.get("type", "")
    if kind == "json_invalid":
        return bad_request("the request body is not valid JSON", code="invalid_json")
    if kind in ("unsupported_parameter", "unsupported_content"):
        # protocol_common's refusals: the sentence names the parameter and says why; a nested one
        # is also told where ("messages.0.content.1: image_url content parts are not supported ...").
        message = first.get("msg", "")
        return bad_request(message if "." not in param else f"{param}: {message}", param=param, code=kind)
    hub_message = hub_wording(param, kind, body) if hub else None
    if hub_message:
        return bad_request(hub_message, param=param)
    if param == "body" and kind in ("model_attributes_type", "dict_type", "model_type"):
        return bad_request("the request body must be a JSON object (send Content-Type: application/json)",
                           code="invalid_json")
    if kind == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return bad_request(f"Missing required parameter: {param}", param=param)
    places = {p for p, _ in located}
    more = f" (and problems in {len(places) - 1} other places)" if len(places) > 1 else ""
    return bad_request(f"Invalid value for {param}: {first.get('msg', 'invalid')}{more}", param=param)


async def api_error_handler(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc, request.url.path)


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(validation_error(exc, hub=is_hub_path(request.url.path)), request.url.path)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 413:
        err = APIError(413, str(exc.detail), code="request_too_large")
    elif exc.status_code == 408:
        err = APIError(408, str(exc.detail), code="request_timeout", headers=exc.headers)
    elif exc.status_code == 404:
        err = APIError(404, f"Not found: {request.url.path}", code="not_found")
    elif exc.status_code == 405:
        err = APIError(405, f"Method {request.method} not allowed on {request.url.path}", code="method_not_allowed")
    else:
        err = APIError(exc.status_code, str(exc.detail))
    return error_response(err, request.url.path)


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    import logging

    logging.getLogger(__name__).exception("unexpected error on %s", request.url.path)
    return error_response(APIError(500, "internal error: the request failed; the server keeps running",
                                   code="internal_error"), request.url.path)
