"""The target profile: paths, payloads and field names of the gateway's API, as data.

Users ask for a request by its role (`create_session`, `send_message`, ...) with the values
it needs; the profile (`conf/targets/<name>.yaml`, the plan's API by default) says what
to send. Mapping another gateway's API is a new profile, not new user code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
ROLES = ("create_session", "session_status", "delete_session", "send_message", "webhook")
FIELDS = (
    "session_id", "session_status", "ready_status", "message_id", "event_type", "ack_event",
    "ack_message_id", "ack_code", "delivered_ack", "failed_ack",
)  # fmt: skip


class ProfileError(ValueError):
    """A target profile that cannot be used; the message is one line."""


@dataclass(frozen=True)
class RequestSpec:
    method: str
    path: str
    json: Any = None


@dataclass(frozen=True)
class TargetProfile:
    name: str
    api_key_header: str
    requests: dict[str, RequestSpec]
    events_path: str
    fields: dict[str, Any]

    def request(self, role: str, **values: Any) -> tuple[str, str, Any, str]:
        """(method, path, json body, stats name) for a request role filled with `values`."""
        spec = self.requests[role]
        path = fill(spec.path, values)
        # Stats group by the path template, not by each session's own path.
        return spec.method, path, fill(spec.json, values), spec.path

    def events(self, **values: Any) -> str:
        return fill(self.events_path, values)


def fill(template: Any, values: dict[str, Any]) -> Any:
    """Replace "{name}" placeholders in strings, lists and mappings."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    return template


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
    missing = [r for r in ROLES if r not in profile.requests] + [
        f for f in FIELDS if f not in profile.fields
    ]
    if missing:
        raise ProfileError(f"{path}: missing {', '.join(missing)}")
    return profile
