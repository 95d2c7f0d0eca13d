"""The target profile: a gateway's API as data (`conf/targets/<name>.yaml`).

Users ask for a request by its role (`create_session`, `send_message`, ...) with the values it
needs; the profile says what to send, which answers count as success and where in the answer
each figure is (`instance.state`, `key.id`, `response[0].id`). Mapping another gateway's API is
a new profile, not new user code. The profile also says how the gateway authenticates
(`users.auth`), how acks of sent messages come back (plain WebSocket, socket.io or webhook:
`AckSpec`), and which of its Prometheus metrics hold live sessions, queued messages and
WebSocket connections.

Loading validates the whole file (a strict pydantic model) and compiles every template and
field path once: a profile that cannot be used is a `ProfileError` of one line naming the file
and the field. A gateway may lack a role (WAHA has no inbound webhook endpoint): a profile holds
the roles its gateway has, and a scenario whose users need one it lacks is refused before any
load (`TargetProfile.lacks`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from suite.validation import first_problem
from users.fieldpath import FieldPathError, Reader, compile_path, parse
from users.templates import Filler, compile_json, compile_template, placeholders

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
ROLES = (
    "create_session", "session_status", "delete_session", "send_message", "webhook",
    "set_webhook", "health",
)  # fmt: skip
OUTCOMES = ("server", "device", "read", "failed")
# Values the suite itself supplies to templates; any other placeholder is a profile variable
# the user gives (`--profile-var NAME=VALUE` or SUITE_<NAME>).
SUITE_VALUES = frozenset(
    {
        "api_key", "session_name", "session_id", "token", "webhook_url", "recipient", "text",
        "timestamp_ms", "message_id", "sender",
    }
)  # fmt: skip


class ProfileError(ValueError):
    """A target profile that cannot be used; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_path(value: str | None) -> str | None:
    if value is not None:
        try:
            parse(value)
        except FieldPathError as exc:
            raise ValueError(str(exc)) from None
    return value


class RequestModel(_Strict):
    """One request: method, path and body templates, what counts as success, and what the
    suite reads from the answer (only the fields its role uses)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    json_body: Any = Field(default=None, alias="json")
    success: list[int] = Field(default_factory=lambda: [200, 201, 202, 204], min_length=1)
    # create_session: where the gateway's id of the new session is (default: the name the
    # suite chose, `{session_name}`).
    session_id: str | None = None
    # session_status: the state's field path and its values.
    state: str | None = None
    ready: list[Any] = Field(default_factory=list)
    pending: list[Any] = Field(default_factory=list)
    failed: list[Any] = Field(default_factory=list)
    # send_message: the accepted message's id; a throttled answer and how long it asks to wait.
    message_id: str | None = None
    throttled: list[int] = Field(default_factory=lambda: [429])
    retry_after_ms: str | None = None
    # auth.token.request: where the token is in the answer.
    token: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    _paths = field_validator("session_id", "state", "message_id", "retry_after_ms", "token")(
        _check_path
    )


class TokenModel(_Strict):
    request: RequestModel
    header: str = "Authorization"
    value: str = "Bearer {token}"


class AuthModel(_Strict):
    """`header` + `key`: one key header on every request, the user's (`global`: `--api-key`)
    or one the suite makes per session (`per_session`: the plan's keys); or a token per
    session from a request of the gateway (`token`); or nothing."""

    header: str | None = None
    key: Literal["global", "per_session"] = "global"
    token: TokenModel | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AuthModel:
        if self.header and self.token:
            raise ValueError("either header (a key) or token, not both")
        return self


class SessionNameModel(_Strict):
    prefix: str = Field(default="loadtest-", pattern=r"^[A-Za-z0-9_-]*$")
    random_chars: int = Field(default=8, ge=0, le=32)


class AckReadingModel(_Strict):
    """Where an ack event says what it is: its kind (`event` path, one of `events`), the
    message's id (`message_id` path, narrowed by `message_id_pattern`'s first group when the
    gateway decorates it) and the ack value (`value` path, mapped by `values`)."""

    event: str | None = None
    events: list[str] = Field(default_factory=list)
    # Where the event names its session, for a channel that carries every session's events
    # (WAHA's /ws?session=*): events of other sessions are not the sender's.
    session: str | None = None
    message_id: str | None = None
    message_id_pattern: str | None = None
    value: str | None = None
    values: dict[Literal["server", "device", "read", "failed"], list[Any]] | None = None

    _paths = field_validator("event", "session", "message_id", "value")(_check_path)

    @field_validator("message_id_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if re.compile(value).groups < 1:
                    raise ValueError("needs one group: the message id")
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class WebSocketChannelModel(AckReadingModel):
    kind: Literal["websocket"]
    url: str  # a path on the target (ws:// or wss:// by its scheme)


class SocketIOChannelModel(AckReadingModel):
    kind: Literal["socketio"]
    namespace: str = "/"
    query: dict[str, str] = Field(default_factory=dict)
    path: str = "socket.io"


class WebhookChannelModel(AckReadingModel):
    kind: Literal["webhook"]


ChannelModel = WebSocketChannelModel | SocketIOChannelModel | WebhookChannelModel


class AcksModel(AckReadingModel):
    channels: list[Annotated[ChannelModel, Field(discriminator="kind")]] = Field(min_length=1)


class MetricsModel(_Strict):
    """The gateway's Prometheus names of what the analyses read (absent: not exported)."""

    sessions_active: str | None = None
    queue_depth: str | None = None
    websocket_connections: str | None = None


class ProfileModel(_Strict):
    name: str
    description: str = ""
    auth: AuthModel = Field(default_factory=AuthModel)
    session_name: SessionNameModel = Field(default_factory=SessionNameModel)
    variables: dict[str, str] = Field(default_factory=dict)  # name -> what it is, for errors
    requests: dict[str, RequestModel] = Field(min_length=1)
    acks: AcksModel | None = None
    metrics: MetricsModel = Field(default_factory=MetricsModel)

    @field_validator("requests")
    @classmethod
    def _known_roles(cls, value: dict[str, RequestModel]) -> dict[str, RequestModel]:
        for role in value:
            if role not in ROLES:
                raise ValueError(f"{role}: unknown role (known: {', '.join(ROLES)})")
        return value


# --- compiled -----------------------------------------------------------------------------


class Request(NamedTuple):
    """A request filled for sending: stats group by `name`, the path template, not by each
    session's own path. A NamedTuple: one is made for every request the generator sends, and
    a tuple is the cheapest thing to make."""

    method: str
    path: str
    body: str | None
    name: str
    success: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RequestSpec:
    """One role, compiled: templates and field-path readers parsed once, since they are used
    for every request the generator sends."""

    model: RequestModel
    fill_path: Filler = field(repr=False)
    fill_body: Filler = field(repr=False)
    success: frozenset[int]
    readers: dict[str, Reader] = field(repr=False)
    needs: frozenset[str]

    @classmethod
    def compile(cls, model: RequestModel) -> RequestSpec:
        readers = {
            name: compile_path(path)
            for name in ("session_id", "state", "message_id", "retry_after_ms", "token")
            if (path := getattr(model, name)) is not None
        }
        body = compile_json(model.json_body) if model.json_body is not None else (lambda _: None)
        return cls(
            model=model,
            fill_path=compile_template(model.path),
            fill_body=body,
            success=frozenset(model.success),
            readers=readers,
            needs=frozenset(placeholders(model.path) | placeholders(model.json_body)),
        )

    @property
    def method(self) -> str:
        return self.model.method

    @property
    def path(self) -> str:
        return self.model.path

    def build(self, values: Mapping[str, Any]) -> Request:
        path, body = self.fill_path(values), self.fill_body(values)
        return Request(self.model.method, path, body, self.path, self.success)

    def read(self, name: str, answer: Any) -> Any:
        """The field `name` (session_id, state, message_id, ...) of a decoded answer."""
        reader = self.readers.get(name)
        return None if reader is None else reader(answer)


@dataclass(frozen=True)
class AckReader:
    """Reads one ack event: `(message id, outcome)` with outcome one of OUTCOMES, or None
    for anything that is not an ack this profile knows."""

    event: Reader | None
    events: frozenset[str]
    session: Reader | None
    message_id: Reader
    pattern: re.Pattern[str] | None
    value: Reader
    outcomes: dict[Any, str]

    def for_session(self, session_id: str) -> Callable[[Any], tuple[str, str] | None]:
        """This reader, for the events of one session only (where events say their session)."""
        if self.session is None:
            return self
        session = self.session
        return lambda payload: self(payload) if session(payload) == session_id else None

    def __call__(self, payload: Any) -> tuple[str, str] | None:
        if self.event is not None and self.event(payload) not in self.events:
            return None
        outcome = self.outcomes.get(_hashable(self.value(payload)))
        if outcome is None:
            return None
        message_id = self.message_id(payload)
        if message_id is None:
            return None
        message_id = str(message_id)
        if self.pattern is not None:
            found = self.pattern.search(message_id)
            if found is None:
                return None
            message_id = found.group(1)
        return message_id, outcome


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


@dataclass(frozen=True)
class AckChannelSpec:
    model: ChannelModel
    read: AckReader

    @property
    def kind(self) -> str:
        return self.model.kind


@dataclass(frozen=True)
class TargetProfile:
    name: str
    source: str
    model: ProfileModel
    requests: dict[str, RequestSpec]
    ack_channels: tuple[AckChannelSpec, ...]
    variables: frozenset[str]  # the placeholders the user must give (`--profile-var`)

    @property
    def auth(self) -> AuthModel:
        return self.model.auth

    @property
    def metrics(self) -> MetricsModel:
        return self.model.metrics

    def request(self, role: str, values: Mapping[str, Any]) -> Request:
        """The request for `role` filled with `values`."""
        return self.requests[role].build(values)

    def lacks(self, roles: Iterable[str]) -> list[str]:
        """The roles of `roles` this profile has no request for."""
        return [role for role in roles if role not in self.requests]

    def webhook_channel(self) -> AckChannelSpec | None:
        return next((c for c in self.ack_channels if c.kind == "webhook"), None)


def _compile_reader(acks: AcksModel, channel: ChannelModel, where: str) -> AckReader:
    def pick(name: str) -> Any:
        own = getattr(channel, name)
        return own if own not in (None, []) else getattr(acks, name)

    values = pick("values")
    message_id, value = pick("message_id"), pick("value")
    for name, given in (("message_id", message_id), ("value", value), ("values", values)):
        if not given:
            raise ProfileError(f"{where}.{name}: required field is missing")
    outcomes = {_hashable(v): outcome for outcome, vs in values.items() for v in vs}
    event, pattern = pick("event"), pick("message_id_pattern")
    if channel.kind == "socketio":
        # socket.io names the event beside its payload (the channel subscribes to `events`);
        # a payload names it only if the channel says where.
        event = channel.event
    if event and not pick("events"):
        raise ProfileError(f"{where}.events: required with event (the names of ack events)")
    return AckReader(
        event=compile_path(event) if event else None,
        events=frozenset(pick("events")),
        session=compile_path(pick("session")) if pick("session") else None,
        message_id=compile_path(message_id),
        pattern=re.compile(pattern) if pattern else None,
        value=compile_path(value),
        outcomes=outcomes,
    )


def compile_profile(model: ProfileModel, source: str) -> TargetProfile:
    """Check what a field-by-field validation cannot (which role reads what, which names a
    template uses) and compile every request and ack reader."""
    requests = {role: RequestSpec.compile(spec) for role, spec in model.requests.items()}
    required = {
        "session_status": ("state", "ready"),
        "send_message": ("message_id",),
    }
    for role, fields in required.items():
        spec = model.requests.get(role)
        for name in fields if spec is not None else ():
            if not getattr(spec, name):
                raise ProfileError(f"{source}: requests.{role}.{name}: required field is missing")
    token = model.auth.token
    if token is not None and not token.request.token:
        raise ProfileError(f"{source}: auth.token.request.token: required field is missing")
    if model.auth.key == "per_session" and not model.auth.header:
        raise ProfileError(f"{source}: auth.key: per_session needs a header")
    channels = []
    for i, channel in enumerate(model.acks.channels if model.acks else ()):
        reader = _compile_reader(model.acks, channel, f"{source}: acks.channels[{i}]")
        channels.append(AckChannelSpec(channel, reader))
    if sum(c.kind == "webhook" for c in channels) > 1:
        raise ProfileError(f"{source}: acks.channels: one webhook channel at most")
    used = set().union(*(spec.needs for spec in requests.values()))
    if token is not None:
        used |= placeholders(token.request.path) | placeholders(token.request.json_body)
    for channel in channels:
        model_ = channel.model
        used |= placeholders(getattr(model_, "url", "")) | placeholders(
            getattr(model_, "namespace", "")
        )
        used |= placeholders(getattr(model_, "query", {}))
    variables = frozenset(used - SUITE_VALUES)
    undeclared = sorted(variables - set(model.variables))
    if undeclared:
        raise ProfileError(
            f"{source}: {{{undeclared[0]}}}: not a value the suite has; declare it under "
            "variables: (the user gives it with --profile-var)"
        )
    if "webhook_url" in used and not any(c.kind == "webhook" for c in channels):
        raise ProfileError(f"{source}: {{webhook_url}} is used but acks has no webhook channel")
    return TargetProfile(
        name=model.name,
        source=source,
        model=model,
        requests=requests,
        ack_channels=tuple(channels),
        variables=variables,
    )


def profile_path(name_or_path: str, conf_dir: Path = CONF_DIR) -> Path:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = conf_dir / "targets" / f"{name_or_path}.yaml"
    return path


def available_profiles(conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "targets").glob("*.yaml"))


def load_profile(name_or_path: str = "plan", conf_dir: Path = CONF_DIR) -> TargetProfile:
    path = profile_path(name_or_path, conf_dir)
    if not path.is_file():
        known = ", ".join(available_profiles(conf_dir))
        raise ProfileError(f"unknown target profile {name_or_path!r} (known: {known})")
    shown = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark is not None else ""
        raise ProfileError(f"{shown}:{where} malformed YAML") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{shown}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{shown}: expected a mapping of profile fields at the top level")
    data.setdefault("name", path.stem)
    try:
        model = ProfileModel.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{shown}: {_first_problem(exc)}") from None
    return compile_profile(model, shown)


_CHANNEL_KINDS = ("websocket", "socketio", "webhook")


def _first_problem(exc: ValidationError) -> str:
    return first_problem(
        exc, lambda previous, part: isinstance(previous, int) and part in _CHANNEL_KINDS
    )
