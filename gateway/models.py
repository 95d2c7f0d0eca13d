"""Request and response bodies of the gateway's API (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_BODY_BYTES = 64 * 1024
MAX_TIMESTAMP_MS = 2**53 - 1  # the largest integer a JavaScript client can send exactly


class CreateSession(BaseModel):
    api_key: str = Field(alias="apiKey", min_length=1, max_length=256)
    webhook_url: str | None = Field(default=None, alias="webhookUrl", max_length=2048)


class SendMessage(BaseModel):
    to: str = Field(
        max_length=64,
        description="Recipient: 10 to 15 digits, optionally followed by '@c.us'.",
    )
    # Length is checked in bytes by the handler so that an oversized body is a 413, not a 400.
    body: str = Field(description="Text of the message, 1 byte to 64 KiB in UTF-8.")


class InboundMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(min_length=1, max_length=256)
    from_: str = Field(alias="from", min_length=1, max_length=128)
    to: str = Field(min_length=1, max_length=128)
    text: str = Field(default="", max_length=MAX_MESSAGE_BODY_BYTES)


class WebhookEvent(BaseModel):
    type: Literal["message_create"]
    timestamp: int = Field(ge=0, le=MAX_TIMESTAMP_MS, description="Milliseconds since epoch.")
    message: InboundMessage


class SessionCreated(BaseModel):
    sessionId: str
    status: Literal["initializing", "ready"]


class SessionInfo(BaseModel):
    sessionId: str
    status: Literal["initializing", "ready"]
    phone: str
    createdAt: int
    messagesSent: int
    subscribers: int


class SessionClosed(BaseModel):
    sessionId: str
    status: Literal["closed"]


class MessageQueued(BaseModel):
    messageId: str
    status: Literal["queued"]


class WebhookAccepted(BaseModel):
    received: bool
    duplicate: bool


class ErrorBody(BaseModel):
    error: str
    detail: str
    retryAfterMs: int | None = None
