"""Every error the gateway answers is JSON: `{"error": <code>, "detail": <human sentence>}`."""

from __future__ import annotations

import json
import math

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An error with a machine code, a sentence and, for 409/429/503, a Retry-After in seconds.

    A subclass of Starlette's HTTPException, so it can be raised anywhere below the exception
    middleware, even from a wrapped `receive` while the body is being read (`limits.BodySizeLimit`).
    """

    def __init__(
        self, status_code: int, code: str, detail: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.code = code
        self.retry_after_s = retry_after_s


def error_response(
    status_code: int, code: str, detail: str, retry_after_s: float | None = None
) -> Response:
    headers = None
    content: dict[str, object] = {"error": code, "detail": detail}
    if retry_after_s is not None:
        # The header takes whole seconds (RFC 9110); the body keeps the precise figure.
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        content["retryAfterMs"] = round(retry_after_s * 1000)
    return Response(
        json.dumps(content, separators=(",", ":")),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence for the first problem of a pydantic validation error."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "The request body is invalid."
    first = errors[0]
    if first["type"] == "json_invalid":
        return "The body is not valid JSON."
    if first["type"] == "json_type" or not first["loc"]:
        return "The body must be a JSON object."
    location = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"


async def _on_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.detail, exc.retry_after_s)
    return error_response(exc.status_code, _CODES.get(exc.status_code, "error"), exc.detail, None)


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    return error_response(500, "internal_error", f"Unexpected {type(exc).__name__}.")


def exception_handlers() -> dict[type[Exception] | int, object]:
    return {HTTPException: _on_http_error, Exception: _on_unexpected}
