"""How a gateway authenticates, chosen by its profile's `auth:`.

Shaped like httpx's `Auth.auth_flow`: a flow yields the requests it needs sent (none for a
key header; wppconnect's `generate-token` for a token), receives each answer, and returns the
headers every later request of the session carries. The user sends what the flow yields with
its own client, so a token request is measured like any other.

Keys, tokens and secrets end up in headers and, for a token step, in a path: stats name a
request by its path template (`/api/{session_name}/{secret_key}/generate-token`), never the
filled path, and failure texts name the status, not the request.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from users.profile import Request, RequestSpec, TargetProfile
from users.templates import compile_template

Headers = dict[str, str]
# What a flow receives for each request it yields: the HTTP status and the decoded body.
Answer = tuple[int, Any]
AuthFlow = Generator[Request, Answer, Headers]


class AuthError(RuntimeError):
    """The gateway did not hand out what the session needs (a token); one line."""


@dataclass(frozen=True)
class KeyAuth:
    """One header with a key on every request: the user's global key or the session's own."""

    header: str

    def flow(self, values: Mapping[str, Any]) -> AuthFlow:
        key = values.get("api_key")
        return {self.header: str(key)} if key else {}
        yield  # a generator that sends nothing


@dataclass(frozen=True)
class TokenAuth:
    """A token per session from a request of the gateway, then presented as `header: value`."""

    request: RequestSpec
    header: str
    value: str

    def flow(self, values: Mapping[str, Any]) -> AuthFlow:
        status, body = yield self.request.build(values)
        if status not in self.request.success:
            raise AuthError(f"token request answered HTTP {status}")
        token = self.request.read("token", body)
        if not token:
            raise AuthError(f"no token at {self.request.model.token} in the token answer")
        return {self.header: compile_template(self.value)({**values, "token": token})}


@dataclass(frozen=True)
class NoAuth:
    def flow(self, values: Mapping[str, Any]) -> AuthFlow:
        return {}
        yield  # a generator that sends nothing


Auth = KeyAuth | TokenAuth | NoAuth


def auth_of(profile: TargetProfile) -> Auth:
    model = profile.auth
    if model.token is not None:
        token = model.token
        return TokenAuth(RequestSpec.compile(token.request), token.header, token.value)
    if model.header:
        return KeyAuth(model.header)
    return NoAuth()


def needs_user_key(profile: TargetProfile) -> bool:
    """Whether the user must give a key (`--api-key`): a global key header."""
    return bool(profile.auth.header) and profile.auth.key == "global"
