"""Target profiles: the format's one-line errors, compiled templates and field paths, and the
four profiles the suite ships (plan, waha, evolution, wppconnect)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from users.fieldpath import compile_path
from users.messages import MessageSender
from users.profile import CONF_DIR, ProfileError, load_profile
from users.sessions import SessionCreator
from users.templates import compile_json, fill
from users.webhooks import WebhookSender

VALUES = {
    "timestamp_ms": 1_700_000_000_000, "message_id": "m-1", "sender": "5511900000000",
    "recipient": "5511912345678", "text": 'Olá "aspas" \\ barra\n👍', "session_id": "s-1",
    "session_name": "loadtest-1", "api_key": "key-1", "webhook_url": "http://127.0.0.1:1/a",
    "secret_key": "s3cret",
}  # fmt: skip
PROFILES = ("plan", "waha", "evolution", "wppconnect")


@pytest.mark.parametrize("name", PROFILES)
def test_every_request_of_the_shipped_profiles_fills_to_its_json(name: str) -> None:
    profile = load_profile(name)
    for role, spec in profile.requests.items():
        request = profile.request(role, VALUES)
        body = fill(spec.model.json_body, VALUES)
        assert request.method == spec.method and request.path == fill(spec.path, VALUES)
        assert request.name == spec.path  # stats group by the template, secrets stay out
        assert (request.body is None) if body is None else (json.loads(request.body) == body)


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


def test_a_missing_value_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        compile_json({"a": "{missing}"})({})


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("instance.state", {"instance": {"state": "open"}}, "open"),
        ("key.id", {"key": {"id": "3EB0"}}, "3EB0"),
        ("response[0].id", {"response": [{"id": "true_1@c.us_A"}]}, "true_1@c.us_A"),
        ("response[-1]", {"response": [1, 2]}, 2),
        ("payload.ack", {"payload": {"ack": 0}}, 0),
        ("response[1].id", {"response": [{"id": 1}]}, None),  # out of range
        ("key.id", {"key": "flat"}, None),  # not a mapping
        ("key.id", ["list"], None),
        ("status", None, None),
    ],
)
def test_field_paths_read_nested_answers(path: str, document: Any, expected: Any) -> None:
    assert compile_path(path)(document) == expected


def profile_file(folder: Path, change: Any, base: str = "plan") -> Path:
    data = yaml.safe_load((CONF_DIR / "targets" / f"{base}.yaml").read_text(encoding="utf-8"))
    change(data)
    path = folder / "changed.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_profile_holds_the_roles_its_gateway_has(tmp_path: Path) -> None:
    profile = load_profile(str(profile_file(tmp_path, lambda d: d["requests"].pop("webhook"))))
    assert profile.lacks(WebhookSender.needs) == ["webhook"]
    assert profile.lacks(MessageSender.needs) == [] and profile.lacks(SessionCreator.needs) == []
    assert load_profile("waha").lacks(WebhookSender.needs) == ["webhook"]


def _set(path: str, value: Any) -> Any:
    """A change to a profile: the value at a dotted path (created where missing)."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("requests.send_mesage", {"method": "POST", "path": "/x"}),
         r"requests: send_mesage: unknown role"),
        (_set("requests.send_message.method", "SEND"), r"requests\.send_message\.method: "),
        (_set("requests.send_message.path", "no-slash"), r"requests\.send_message\.path: must"),
        (_set("requests.send_message.success", []), r"requests\.send_message\.success: "),
        (_set("requests.send_message.message_id", "key..id"),
         r"requests\.send_message\.message_id: 'key\.\.id' is not a field path"),
        (_set("requests.send_message.mesage_id", "id"),
         r"requests\.send_message\.mesage_id: unknown field \(a typo\?\)"),
        (_set("requests.session_status.state", None),
         r"requests\.session_status\.state: required field is missing"),
        (_set("requests.send_message.path", "/api/{tenant}/messages"),
         r"\{tenant\}: not a value the suite has; declare it under variables:"),
        (_set("requests.create_session.json", {"webhookUrl": "{webhook_url}"}),
         r"\{webhook_url\} is used but acks has no webhook channel"),
        (_set("acks.channels", [{"kind": "carrier-pigeon"}]), r"acks\.channels\[0\]"),
        (_set("acks.channels.0.url", None), r"acks\.channels\[0\]\.url: "),
        (_set("acks.values", None), r"acks\.channels\[0\]\.values: required field is missing"),
        (_set("acks.message_id_pattern", "no group"), r"acks\.message_id_pattern: needs one"),
        (_set("auth.key", "sometimes"), r"auth\.key: "),
        (_set("auth.token", {"request": {"method": "POST", "path": "/t"}}),
         r"auth: .*either header"),
    ],
)  # fmt: skip
def test_a_bad_profile_is_one_line_naming_file_and_field(
    tmp_path: Path, change: Any, message: str
) -> None:
    path = profile_file(tmp_path, change)
    with pytest.raises(ProfileError, match=message) as caught:
        load_profile(str(path))
    text = str(caught.value)
    assert text.startswith(str(path)) and "\n" not in text, text


def test_malformed_yaml_and_an_unknown_name_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrequests: [\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad\.yaml:\d+: malformed YAML$"):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match=r"unknown target profile 'wahaa' \(known: evolution"):
        load_profile("wahaa")


def test_acks_are_read_and_mapped_by_each_profile() -> None:
    cases = {
        "plan": {"event": "message_ack", "messageId": "m-1", "ack": 2},
        "waha": {"event": "message.ack", "session": "default",
                 "payload": {"id": "true_5511999999999@c.us_m-1", "ack": 2}},
        "evolution": {"event": "messages.update", "instance": "loadtest-1",
                      "data": {"keyId": "m-1", "status": "DELIVERY_ACK"}},
        "wppconnect": {"event": "onack", "session": "loadtest-1",
                       "id": {"_serialized": "m-1"}, "ack": 2},
    }  # fmt: skip
    for name, event in cases.items():
        read = load_profile(name).ack_channels[0].read
        assert read(event) == ("m-1", "device"), name
    waha = load_profile("waha").ack_channels[0].read
    frame = cases["waha"]
    assert waha.for_session("default")(frame) == ("m-1", "device")
    assert waha.for_session("other")(frame) is None  # /ws?session=* carries every session's
    assert waha({**frame, "event": "session.status"}) is None
    assert waha({**frame, "payload": {"id": "true_x@c.us_m-1", "ack": 1}}) == ("m-1", "server")
    assert waha({**frame, "payload": {"id": "true_x@c.us_m-1", "ack": 0}}) is None  # pending
    evolution = load_profile("evolution").ack_channels[0].read
    assert evolution({**cases["evolution"], "data": {"keyId": "m", "status": "ERROR"}}) == (
        "m",
        "failed",
    )


def test_wppconnect_needs_its_secret_and_a_token_step() -> None:
    profile = load_profile("wppconnect")
    assert profile.variables == {"secret_key"}
    assert profile.auth.token is not None and profile.auth.token.value == "Bearer {token}"
    assert load_profile("plan").variables == frozenset()
