"""Bare reference endpoints for the gateway benchmark: the same webhook body, nothing else.

uvicorn bench.reference_apps:fastapi_app   # FastAPI endpoint with a pydantic body
uvicorn bench.reference_apps:starlette_app # Starlette endpoint + model_validate_json
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.models import WebhookEvent

fastapi_app = FastAPI()


@fastapi_app.post("/api/webhook")
async def fastapi_webhook(event: WebhookEvent) -> dict[str, bool]:
    return {"received": True}


async def _starlette_webhook(request: Request) -> Response:
    WebhookEvent.model_validate_json(await request.body())
    return Response(b'{"received":true}', media_type="application/json")


starlette_app = Starlette(routes=[Route("/api/webhook", _starlette_webhook, methods=["POST"])])
