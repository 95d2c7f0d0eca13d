"""Every error the gateway answers is JSON: `{"error": <code>, "detail": <human sentence>}`."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from gateway.models import ErrorBody

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An error with a machine code, a sentence and, for 429/503, a Retry-After in seconds.

    It subclasses Starlette's HTTPException so that FastAPI lets it through untouched even when
    it is raised while the request body is being read (see `limits.BodySizeLimit`).
    """

    def __init__(
        self, status_code: int, code: str, detail: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.code = code
        self.retry_after_s = retry_after_s


def error_response(
    status_code: int, code: str, detail: str, retry_after_s: float | None = None
) -> JSONResponse:
    headers = None
    content: dict[str, object] = {"error": code, "detail": detail}
    if retry_after_s is not None:
        # The header takes whole seconds (RFC 9110); the body keeps the precise figure.
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        content["retryAfterMs"] = round(retry_after_s * 1000)
    return JSONResponse(content, status_code=status_code, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is invalid."
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return "The body is not valid JSON."
    suffix = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{location or 'body'}: {message}{suffix}"


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, str(exc.detail), exc.retry_after_s)


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else "The request failed."
    if status == 400 and detail == "There was an error parsing the body":
        return error_response(400, "invalid_body", "The body could not be read as JSON.")
    return error_response(status, _STATUS_CODES.get(status, "error"), detail)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "invalid_request", _describe_validation(exc))


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", f"Unexpected {type(exc).__name__}.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)


__all__ = ["ApiError", "ErrorBody", "error_response", "install_error_handlers"]
