"""The target profile: paths, payloads and field names of the gateway's API, as data.

Users ask for a request by its role (`create_session`, `send_message`, ...) with the values
it needs; the profile (`conf/targets/<name>.yaml`, the plan's API by default) says what
to send. Mapping another gateway's API is a new profile, not new user code. A gateway may lack
a role (WAHA has no inbound webhook endpoint): a profile holds the roles its gateway has, and
a scenario whose users need one it lacks is refused before any load (`TargetProfile.lacks`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
ROLES = ("create_session", "session_status", "delete_session", "send_message", "webhook")
OPTIONAL_ROLES = ("health",)
FIELDS = (
    "session_id", "session_status", "ready_status", "message_id", "event_type", "ack_event",
    "ack_message_id", "ack_code", "delivered_ack", "failed_ack",
)  # fmt: skip


class ProfileError(ValueError):
    """A target profile that cannot be used; the message is one line."""


Filler = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class RequestSpec:
    """One request role; its path and body templates compiled once (`compile_template`,
    `compile_json`), since they are filled for every request the generator sends."""

    method: str
    path: str
    json: Any = None
    fill_path: Filler = field(init=False, repr=False, compare=False)
    fill_body: Filler = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fill_path", compile_template(self.path))
        body = compile_json(self.json) if self.json is not None else (lambda _: None)
        object.__setattr__(self, "fill_body", body)


@dataclass(frozen=True)
class TargetProfile:
    name: str
    api_key_header: str
    requests: dict[str, RequestSpec]
    events_path: str
    fields: dict[str, Any]

    def request(self, role: str, **values: Any) -> tuple[str, str, str | None, str]:
        """(method, path, JSON body text or None, stats name) for a role filled with `values`."""
        spec = self.requests[role]
        # Stats group by the path template, not by each session's own path.
        return spec.method, spec.fill_path(values), spec.fill_body(values), spec.path

    def events(self, **values: Any) -> str:
        return fill(self.events_path, values)

    def lacks(self, roles: Iterable[str]) -> list[str]:
        """The roles of `roles` this profile has no request for."""
        return [role for role in roles if role not in self.requests]


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """Replace "{name}" placeholders in strings, lists and mappings: a string that is one
    placeholder takes the value as it is (a number stays a number), others are formatted."""
    return compile_template(template)(values)


def compile_template(template: Any) -> Filler:
    """`fill` for one template, with the template parsed once."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            name = whole.group(1)
            return lambda values: values[name]
        parts = _PLACEHOLDER.split(template)  # literal, name, literal, name, ..., literal
        if len(parts) == 1:
            return lambda _: template
        first, names, literals = parts[0], parts[1::2], parts[2::2]
        pairs = list(zip(names, literals, strict=True))
        return lambda values: (
            first + "".join([str(values[name]) + literal for name, literal in pairs])
        )
    if isinstance(template, dict):
        items = [(key, compile_template(value)) for key, value in template.items()]
        return lambda values: {key: filler(values) for key, filler in items}
    if isinstance(template, list):
        fillers = [compile_template(item) for item in template]
        return lambda values: [filler(values) for filler in fillers]
    return lambda _: template


def load_profile(name_or_path: str = "plan", conf_dir: Path = CONF_DIR) -> TargetProfile:
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = conf_dir / "targets" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown target profile {name_or_path!r} (no {path})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        requests = {
            role: RequestSpec(str(spec["method"]).upper(), str(spec["path"]), spec.get("json"))
            for role, spec in data["requests"].items()
        }
        profile = TargetProfile(
            name=str(data.get("name", path.stem)),
            api_key_header=str(data.get("api_key_header", "X-Api-Key")),
            requests=requests,
            events_path=str(data["events"]["path"]),
            fields=dict(data["fields"]),
        )
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ProfileError(
            f"{path}: not a valid target profile ({type(exc).__name__}: {exc})"
        ) from None
    unknown = [r for r in profile.requests if r not in (*ROLES, *OPTIONAL_ROLES)]
    if unknown:
        raise ProfileError(
            f"{path}: requests.{unknown[0]}: unknown role (known: {', '.join(ROLES)}, "
            f"{', '.join(OPTIONAL_ROLES)})"
        )
    if not profile.requests:
        raise ProfileError(f"{path}: no requests")
    missing = [f for f in FIELDS if f not in profile.fields]
    if missing:
        raise ProfileError(f"{path}: missing {', '.join(missing)}")
    return profile


_encode_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _json_value(value: Any) -> str:
    if type(value) is str:
        return _encode_string(value)
    if type(value) is int:
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def compile_json(template: Any) -> Filler:
    """`json.dumps(fill(template, values))`, with the template's constant parts encoded once:
    the same JSON text, written for every request the generator sends without building the
    dict and walking it again."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            name = whole.group(1)
            return lambda values: _json_value(values[name])
        if not _PLACEHOLDER.search(template):
            text = _json_value(template)
            return lambda _: text
        filler = compile_template(template)
        return lambda values: _encode_string(filler(values))
    if isinstance(template, dict | list):
        if isinstance(template, dict):
            parts = [(_encode_string(str(k)) + ":", compile_json(v)) for k, v in template.items()]
            opening, closing = "{", "}"
        else:
            parts = [("", compile_json(item)) for item in template]
            opening, closing = "[", "]"
        return lambda values: (
            opening + ",".join([prefix + filler(values) for prefix, filler in parts]) + closing
        )
    text = _json_value(template)
    return lambda _: text
