"""One error type for the whole API, rendered in the shape each path family expects.

/v1/* (OpenAI):  {"error": {"message", "type", "param", "code"}}
/api/ai/* (hub): {"error": {"type", "title", "detail"}, "status": "error", "status_message": TYPE}
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
    404: ("invalid_request_error", "resource_not_found"),
    405: ("invalid_request_error", "invalid_params"),
    413: ("invalid_request_error", "invalid_params"),
    422: ("invalid_request_error", "invalid_params"),
    429: ("rate_limit_error", "unknown_error"),
    503: ("server_error", "unknown_error"),
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

    def body_for(self, path: str) -> dict:
        return self.hub_body() if path.startswith("/api/ai") else self.openai_body()


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found_model(name: str) -> APIError:
    return APIError(404, f"Model not found: {name}", code="model_not_found", param="model")


def error_response(err: APIError, path: str) -> JSONResponse:
    return JSONResponse(err.body_for(path), status_code=err.status, headers=err.headers)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_error(exc: RequestValidationError) -> APIError:
    """The first problem of a pydantic validation failure, as one readable sentence."""
    errors = exc.errors()
    if not errors:
        return bad_request("invalid request body")
    first = errors[0]
    param = _location(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "json_invalid":
        return bad_request("the request body is not valid JSON", code="invalid_json")
    if param == "body" and kind in ("model_attributes_type", "dict_type"):
        return bad_request("the request body must be a JSON object (send Content-Type: application/json)",
                           code="invalid_json")
    if kind == "extra_forbidden":
        return bad_request(f"Unrecognized request argument supplied: {param}", param=param)
    if kind == "missing":
        return bad_request(f"Missing required parameter: {param}", param=param)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return bad_request(f"Invalid value for {param}: {first.get('msg', 'invalid')}{more}", param=param)


async def api_error_handler(request: Request, exc: APIError) -> JSONResponse:
    return error_response(exc, request.url.path)


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(validation_error(exc), request.url.path)


async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
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
