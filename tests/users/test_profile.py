"""The target profile's templates: filled once compiled, and written straight to JSON text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from users.messages import MessageSender
from users.profile import CONF_DIR, ProfileError, compile_json, fill, load_profile
from users.sessions import SessionCreator
from users.webhooks import WebhookSender

VALUES = {
    "timestamp_ms": 1_700_000_000_000, "message_id": "m-1", "sender": "5511900000000",
    "recipient": "5511912345678", "text": 'Olá "aspas" \\ barra\n👍', "session_id": "s-1",
    "api_key": "key-1",
}  # fmt: skip


@pytest.mark.parametrize("role", ["create_session", "send_message", "webhook", "session_status"])
def test_the_json_text_is_the_json_of_the_filled_body(role: str) -> None:
    profile = load_profile()
    spec = profile.requests[role]
    method, path, text, name = profile.request(role, **VALUES)
    body = fill(spec.json, VALUES)
    assert method == spec.method and path == fill(spec.path, VALUES) and name == spec.path
    assert (text is None) if body is None else (json.loads(text) == body)


@pytest.mark.parametrize(
    "template",
    [
        "{text}",  # a whole placeholder keeps its value's type
        "{n}",
        "pre-{text}-{n}-post",
        "no placeholder",
        {"a": ["{text}", 1, 2.5, True, None, {"b": "x{n}y"}], "n": "{n}", "{odd key}": "{n}"},
        [],
        {},
        7,
    ],
)
def test_compiled_templates_equal_fill(template: object) -> None:
    values = {"text": 'é\n"', "n": 3}
    assert json.loads(compile_json(template)(values)) == fill(template, values)
    assert json.dumps(fill(template, values), ensure_ascii=False)  # still plain data


def test_a_missing_value_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        compile_json({"a": "{missing}"})({})


def without(role: str, folder: Path) -> Path:
    """The plan's profile less one request, as a gateway that lacks it would be mapped."""
    data = yaml.safe_load((CONF_DIR / "targets" / "plan.yaml").read_text(encoding="utf-8"))
    del data["requests"][role]
    data["name"] = f"plan-without-{role}"
    path = folder / f"without-{role}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_profile_holds_the_roles_its_gateway_has(tmp_path: Path) -> None:
    profile = load_profile(str(without("webhook", tmp_path)))
    assert profile.lacks(WebhookSender.needs) == ["webhook"]
    assert profile.lacks(MessageSender.needs) == [] and profile.lacks(SessionCreator.needs) == []


def test_an_unknown_role_is_named(tmp_path: Path) -> None:
    data = yaml.safe_load((CONF_DIR / "targets" / "plan.yaml").read_text(encoding="utf-8"))
    data["requests"]["send_mesage"] = data["requests"]["send_message"]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"requests\.send_mesage: unknown role"):
        load_profile(str(path))
