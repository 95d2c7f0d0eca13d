"""The target profile's templates: filled once compiled, and written straight to JSON text."""

from __future__ import annotations

import json

import pytest

from users.profile import compile_json, fill, load_profile

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
