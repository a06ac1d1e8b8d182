"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}``, for every failure."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from nesso.errors import NessoError
from nesso.tokenizer import surrogate_path

_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
          500: "server_error", 503: "server_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def check_unicode(value: Any) -> None:
    """A lone UTF-16 surrogate (a ``"\\ud800"`` escape) is valid JSON but not text a tokenizer can encode: 400,
    naming the field."""
    found = surrogate_path(value)
    if found:
        where, char = found
        raise ApiError(400, f"{where or 'the request'} has an unpaired UTF-16 surrogate (\\u{ord(char):04x}), which "
                            "is not valid Unicode; escape characters outside the BMP as a surrogate pair or send them "
                            "as UTF-8", param=where or None, code="invalid_unicode")


_ROLES = {"system", "developer", "user", "assistant", "tool"}
_FORMATS = {"text", "json_object", "json_schema"}
_TYPE_NAMES = {"str", "int", "float", "bool", "none", "dict", "list"}


def _loc(loc: tuple[Any, ...]) -> str:
    """pydantic's location -> the request's own path (``messages[0].content``), without the union branches
    pydantic adds (``user``, ``str``, ``list[ContentPart]``, ``NamedToolChoice``...)."""
    out, prev = "", None
    for p in loc[1:]:
        branch = isinstance(p, str) and (
            p[:1].isupper() or "[" in p or p in _TYPE_NAMES or (isinstance(prev, int) and p in _ROLES)
            or (prev == "response_format" and p in _FORMATS))
        if not branch:
            out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
        prev = p
    return out


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, str | None, str]:
    """(message, param, code) for pydantic's error list: the first problem, and how many more there are."""
    for e in errors:
        if e.get("type") == "json_invalid":
            detail = (e.get("ctx") or {}).get("error", "")
            return f"the request body is not valid JSON ({detail})".replace(" ()", ""), None, "invalid_json"
    if not errors:
        return "the request is invalid", None, "invalid_request"
    first = errors[0]
    param = _loc(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing" and not param:
        return "the request needs a JSON body", None, "missing_body"
    if not param and first.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        return ("the request body must be a JSON object, sent with Content-Type: application/json", None,
                "invalid_body")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if first.get("type") == "missing":
        return f"{param} is required{more}", param, "missing_required_parameter"
    return f"{param}: {msg}{more}" if param else f"{msg}{more}", param or None, "invalid_value"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.message, e.param, e.code)

    @app.exception_handler(NessoError)
    async def _nesso(_: Request, e: NessoError) -> JSONResponse:
        return error_response(400, str(e), None, "invalid_request")

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        message, param, code = describe_validation(list(e.errors()))
        return error_response(400, message, param, code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        messages = {404: "no such endpoint; see GET /openapi.json", 405: "method not allowed on this endpoint"}
        message = messages.get(e.status_code) or str(e.detail)
        code = {404: "not_found", 413: "request_too_large"}.get(e.status_code)
        if e.status_code == 400 and "parsing the body" in message:  # FastAPI's words: bytes or nesting
            message = "the request body could not be parsed: it is not UTF-8, or its JSON is nested too deeply"
            code = "invalid_json"
        return error_response(e.status_code, message, None, code,
                              headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(e).__name__}: {e}", None, "internal_error")
