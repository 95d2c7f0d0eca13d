"""Generated-input tests: no input makes the gateway answer 5xx, and every error is JSON.

Acceptance criterion: malformed or non-UTF-8 JSON, wrong types, missing or unknown fields, huge
numbers and oversized bodies all get a 4xx whose body is `{"error": <code>, "detail": <sentence>}`;
only a fault switch may cause a 5xx. Proven against one real gateway process on loopback by

1. schemathesis, driven by the gateway's own `/openapi.json`, in positive and negative modes and
   in its coverage phase (missing fields, wrong types, boundary values, unexpected media types);
2. hypothesis, sending raw bytes (binary, invalid UTF-8, wrong types, huge numbers, deep nesting,
   unknown fields, escaped lone surrogates) and chunked bodies over 1 MiB to every POST endpoint;
3. an explicit check that a Content-Length over 1 MiB is refused before the body is read,
   and the webhookUrl values the fuzzing found (they were 500s, or accepted but unusable).

The last test checks that the generated tests sent at least 1,000 requests between them (about
2,000 as configured, in some 20 s) and that the gateway logged no traceback meanwhile.
Generation is derandomized: every run sends the same inputs, and a failure prints a blob for
`@reproduce_failure`.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)

from gateway.limits import MAX_REQUEST_BYTES
from gateway.process import GatewayProcess
from gateway.schema import openapi_document

# Enough per operation that the schema-driven run alone exceeds 1,000 requests: the two GETs
# without parameters stop after one example, the five others each get this many plus coverage.
SCHEMA_EXAMPLES = 200
RAW_EXAMPLES = 800
CHUNKED_EXAMPLES = 12
MIN_REQUESTS = 1000

# Requests sent by each generated test, checked by the last test of the module.
sent: Counter[str] = Counter()

FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[GatewayProcess]:
    """A gateway where sends can succeed: sessions are ready at once, unlimited and kept."""
    args = [
        "--pairing-delay-s", "0",
        "--rate-limit", "0",
        "--session-idle-expiry-s", "0",
        "--session-memory-kib", "0",
        "--max-sessions", "100000",
    ]  # fmt: skip
    with GatewayProcess(args) as process:
        yield process


@pytest.fixture(scope="module")
def http(fuzz_gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_gateway.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def ready_session(http: httpx.Client) -> str:
    """A ready session that no generated request deletes (its id is 24 random hex digits)."""
    response = http.post("/api/sessions", json={"apiKey": "fuzz-key"})
    assert response.status_code == 201, response.text
    session_id = response.json()["sessionId"]
    assert http.get(f"/api/sessions/{session_id}").json()["status"] == "ready"
    return session_id


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: GatewayProcess):
    schema = schemathesis.openapi.from_url(fuzz_gateway.url + "/openapi.json")
    schema.config.update(base_url=fuzz_gateway.url, request_timeout=10)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=SCHEMA_EXAMPLES
    )
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    return schema


@pytest.fixture(scope="module")
def requests_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def assert_error_body(status_code: int, content: bytes, what: str) -> None:
    """Below 500, and a 4xx says what went wrong as `{"error": code, "detail": sentence}`."""
    assert status_code < 500, f"{what}: {status_code} {content[:300]!r}"
    if status_code < 400:
        return
    try:
        body = json.loads(content)
    except ValueError:
        pytest.fail(f"{what}: {status_code} with a body that is not JSON: {content[:300]!r}")
    assert isinstance(body, dict), f"{what}: {status_code} {body!r}"
    assert isinstance(body.get("error"), str) and body["error"], f"{what}: {body!r}"
    assert isinstance(body.get("detail"), str) and body["detail"], f"{what}: {body!r}"


# --- 1. schemathesis, from the gateway's own OpenAPI document --------------------------------

# schemathesis' lazy `from_fixture(...).parametrize()` does not run under pytest 9.2 (it sets
# `request.node._nodeid`, which pytest no longer has), so each operation's test is built here with
# the same builder, on the schema loaded from the running gateway's /openapi.json.
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in openapi_document()["paths"].items()
    for method in item
]
SEND_PATH = "/api/sessions/{id}/messages"
ALL_PHASES = [HypothesisTestMode.EXAMPLES, HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING]


@pytest.mark.parametrize("label", OPERATIONS)
def test_schema_driven_requests_never_get_a_5xx(
    api_schema, label: str, ready_session: str, requests_session: requests.Session
) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    def call(case: Case) -> None:
        if case.path == SEND_PATH and sent["schemathesis:" + SEND_PATH] % 2 == 0:
            # Every other send goes to a real, ready session, so that body validation runs
            # (with a generated id it stops at 404 before reading the body).
            case.path_parameters["id"] = ready_session
        sent["schemathesis"] += 1
        sent["schemathesis:" + case.path] += 1
        if case.meta is not None:
            sent[f"schemathesis {case.meta.phase.name} {case.meta.generation.mode}"] += 1
        response = case.call(session=requests_session, timeout=10)
        sent[f"schemathesis {response.status_code}"] += 1
        case.validate_response(response, checks=[not_a_server_error])
        assert_error_body(response.status_code, response.content, case.as_curl_command())

    test = create_test(
        operation=operation,
        test_func=call,
        config=HypothesisTestConfig(
            project=api_schema.config,
            modes=ALL_PHASES,
            settings=api_schema.config.get_hypothesis_settings(
                operation=operation, phase="fuzzing"
            ),
            explicit_settings=FUZZ_SETTINGS,
        ),
    )
    test()


# --- 2. hypothesis, raw bytes to every POST endpoint -----------------------------------------

# Any text, NUL and astral characters included; `json.dumps` escapes it (ensure_ascii).
TEXT = st.text(
    st.one_of(st.characters(codec="utf-8"), st.sampled_from('\x00\n"\\\U0001f600')), max_size=40
)
# Lone surrogates, escaped as JSON allows ("\ud800"): not a character, so not valid UTF-8 text.
# Kept apart from TEXT so that they do not make every generated body invalid JSON.
SURROGATES = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
).map(json.dumps)
KEYS = st.one_of(
    st.sampled_from(["apiKey", "webhookUrl", "to", "body", "type", "timestamp", "message"]),
    st.sampled_from(["id", "from", "text", "from_", "extra", "__proto__", ""]),
    TEXT,
)
HUGE_NUMBERS = st.one_of(
    st.integers(300, 5000).map(lambda digits: "9" * digits),  # 10**400 and far beyond
    st.integers(300, 5000).map(lambda digits: "-1" + "0" * digits),
    st.sampled_from(["1e400", "-1e400", "1e-400", "9007199254740993", "18446744073709551616"]),
    st.sampled_from(["0.1e99999999999", "1" * 20 + "." + "1" * 20, "-0", "0e0"]),
)
# URL-like strings for webhookUrl, from pieces that URL parsers trip on: brackets, ports,
# userinfo, percent signs, control characters.
URL_PIECES = ["[", "]", "::1", "127.0.0.1", "localhost", ":", "80", "99999", "-1", "@", "/"]
URL_PIECES += ["%", "%zz", "?", "#", "x", " ", "\x00", "\t", "\x7f", "\u00e9", "\\"]
URLS = st.builds(
    lambda scheme, pieces: json.dumps(scheme + "".join(pieces)),
    st.sampled_from(["http://", "https://", "ftp://", "http:", "//", "", "HTTP://"]),
    st.lists(st.sampled_from(URL_PIECES), max_size=8),
)
SCALARS = st.one_of(
    st.sampled_from(["null", "true", "false", "0", "-1", "1.5", "[]", "{}", '""']),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "01", "+1", "0x10", ".5", "1."]),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    HUGE_NUMBERS,
    URLS,
    TEXT.map(json.dumps),
    SURROGATES,
    st.sampled_from(['"\\ud800"', '"\\udfff"', '"a\\ud800\\u0000b"', '"\\uD83D"', '"\\x41"']),
    st.sampled_from(['"5511900000001"', '"5511900000001@c.us"', '"message_create"', '"hi"']),
)


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(fields: dict[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in fields.items()) + "}"


JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(_array),
        st.dictionaries(KEYS, inner, max_size=5).map(_object),
    ),
    max_leaves=12,
)

# Well-formed bodies per endpoint, as JSON texts, to mutate field by field.
VALID_FIELDS = {
    "sessions": {"apiKey": '"fuzz"', "webhookUrl": '"http://127.0.0.1:9/hook"'},
    "send": {"to": '"5511900000001"', "body": '"hello"'},
    "webhook": {
        "type": '"message_create"',
        "timestamp": "1700000000000",
        "message": _object({"id": '"m1"', "from": '"5511911111111"', "to": '"5511900000001"'}),
    },
}


def _sized_text(size: int, char: str) -> str:
    return json.dumps(char * size, ensure_ascii=False)


# Near-valid values per field: around the length, range and format limits the gateway checks.
PHONES = st.builds(
    lambda digits, suffix: json.dumps(digits + suffix),
    st.text("0123456789", min_size=8, max_size=17),
    st.sampled_from(["", "", "@c.us", "@g.us", "@c.us@c.us", " ", "\n"]),
)
FIELD_VALUES: dict[str, st.SearchStrategy[str]] = {
    "apiKey": st.builds(_sized_text, st.sampled_from([0, 1, 255, 256, 257, 5000]), st.just("k")),
    "webhookUrl": st.one_of(URLS, URLS, st.just("null")),
    "to": st.one_of(PHONES, st.builds(_sized_text, st.sampled_from([64, 65]), st.just("1"))),
    # 64 KiB is 16,384 four-byte characters: one more is a 413 although few characters.
    "body": st.builds(
        _sized_text,
        st.sampled_from([0, 1, 16_384, 16_385, 65_536, 65_537]),
        st.sampled_from(["a", "\u00e9", "\U0001f600"]),
    ),
    "type": st.sampled_from(['"message_create"', '"MESSAGE_CREATE"', '"message_ack"', '""']),
    "timestamp": st.one_of(
        st.sampled_from(["-1", "0", str(2**53 - 1), str(2**53), "1.0", "1.5", "1e3", '"1"']),
        HUGE_NUMBERS,
    ),
    "id": st.builds(_sized_text, st.sampled_from([0, 1, 256, 257]), st.just("m")),
    "from": st.builds(_sized_text, st.sampled_from([0, 1, 128, 129]), st.just("5")),
    "text": st.builds(_sized_text, st.sampled_from([0, 65_536, 65_537]), st.just("t")),
}


def field_values(key: str) -> st.SearchStrategy[str]:
    """Mostly a near-valid value for that field, else any JSON value."""
    if key in FIELD_VALUES:
        return st.one_of(FIELD_VALUES[key], FIELD_VALUES[key], JSON_VALUES)
    return JSON_VALUES


@st.composite
def mutated_objects(draw: st.DrawFn, endpoint: str) -> bytes:
    """A valid body with fields dropped, retyped or added, or a nested field retyped."""
    fields = dict(VALID_FIELDS[endpoint])
    for key in list(fields):
        action = draw(st.sampled_from(["keep", "keep", "drop", "retype"]))
        if action == "drop":
            del fields[key]
        elif action == "retype":
            fields[key] = draw(field_values(key))
    if endpoint == "webhook" and "message" in fields and draw(st.booleans()):
        inner = {"id": '"m1"', "from": '"5511911111111"', "to": '"5511900000001"'}
        key = draw(st.sampled_from(["id", "from", "to", "text", "unknown"]))
        inner[key] = draw(field_values(key))
        fields["message"] = _object(inner)
    fields.update(draw(st.dictionaries(KEYS, JSON_VALUES, max_size=3)))
    return _object(fields).encode("utf-8", "surrogatepass")


@st.composite
def one_field_off(draw: st.DrawFn, endpoint: str) -> bytes:
    """A valid body but for one field, set near its limits: it reaches that field's checks."""
    fields = dict(VALID_FIELDS[endpoint])
    key = draw(st.sampled_from(sorted(fields)))
    if key == "message":
        inner = {"id": '"m1"', "from": '"5511911111111"', "to": '"5511900000001"'}
        inner_key = draw(st.sampled_from(["id", "from", "to", "text"]))
        inner[inner_key] = draw(FIELD_VALUES[inner_key])
        fields[key] = _object(inner)
    else:
        fields[key] = draw(FIELD_VALUES[key])
    return _object(fields).encode("utf-8", "surrogatepass")


@st.composite
def invalid_utf8_in_strings(draw: st.DrawFn, endpoint: str) -> bytes:
    """A valid body whose string values carry bytes that are not UTF-8."""
    junk = draw(
        st.one_of(
            st.binary(min_size=1, max_size=16),
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]),
        )
    )
    fields = {key: value for key, value in VALID_FIELDS[endpoint].items()}
    key = draw(st.sampled_from(sorted(fields)))
    head = _object({k: v for k, v in fields.items() if k != key})[:-1]
    separator = "," if len(head) > 1 else ""
    return head.encode() + f'{separator}"{key}":"'.encode() + junk + b'"}'


def deep_nesting(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return ('{"a":' * depth + "1" + "}" * depth).encode()
    return (opener * depth + closer * depth).encode()


# Bodies that are not a JSON object at all, or not JSON, or not even UTF-8.
MALFORMED = st.one_of(
    st.binary(max_size=512),
    st.just(b""),
    JSON_VALUES.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.builds(deep_nesting, st.integers(1, 100_000), st.sampled_from("[{")),
    st.integers(1, 50_000).map(lambda depth: b"[" * depth),  # never closed
    HUGE_NUMBERS.map(str.encode),
    st.sampled_from([b"\xef\xbb\xbf{}", b"\x00", b"{", b'{"apiKey":', b"{}}", b"[1,]"]),
    st.sampled_from(["\ufeff{}".encode("utf-16"), '{"to":"\u00e9"}'.encode("latin-1")]),
)


def raw_bodies(endpoint: str) -> st.SearchStrategy[bytes]:
    """Mostly near-valid objects (they reach the field checks), the rest malformed."""
    return st.one_of(
        one_field_off(endpoint),
        one_field_off(endpoint),
        mutated_objects(endpoint),
        mutated_objects(endpoint),
        invalid_utf8_in_strings(endpoint),
        MALFORMED,
    )


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        None,
    ]
)
# (body shape, path, share of RAW_EXAMPLES); "{ready}" is the ready session's id.
RAW_TARGETS = [
    ("sessions", "/api/sessions", 0.3),
    ("send", "/api/sessions/{ready}/messages", 0.3),
    ("send", "/api/sessions/no-such-session/messages", 0.1),
    ("webhook", "/api/webhook", 0.3),
]


def _in_chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(
    ("endpoint", "path", "share"), RAW_TARGETS, ids=[path for _, path, _ in RAW_TARGETS]
)
def test_raw_bodies_to_post_endpoints_never_get_a_5xx(
    http: httpx.Client, ready_session: str, endpoint: str, path: str, share: float
) -> None:
    path = path.format(ready=ready_session)

    @settings(FUZZ_SETTINGS, max_examples=round(RAW_EXAMPLES * share))
    @given(body=raw_bodies(endpoint), content_type=CONTENT_TYPES, chunked=st.booleans())
    def check(body: bytes, content_type: str | None, chunked: bool) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        # A generator has no length: httpx sends it with Transfer-Encoding: chunked.
        content = _in_chunks(body, 4096) if chunked else body
        sent["hypothesis"] += 1
        response = http.post(path, content=content, headers=headers)
        sent[f"hypothesis {response.status_code}"] += 1
        assert_error_body(response.status_code, response.content, f"POST {path} {body[:200]!r}")

    check()


def test_chunked_bodies_over_1_mib_get_413(http: httpx.Client, ready_session: str) -> None:
    paths = ["/api/sessions", f"/api/sessions/{ready_session}/messages", "/api/webhook"]

    @settings(FUZZ_SETTINGS, max_examples=CHUNKED_EXAMPLES)
    @given(
        path=st.sampled_from(paths),
        size=st.integers(MAX_REQUEST_BYTES + 1, 3 * MAX_REQUEST_BYTES),
        chunk=st.integers(1024, 256 * 1024),
        fill=st.sampled_from([b" ", b"[", b"\xff", b'{"body":"']),
    )
    def check(path: str, size: int, chunk: int, fill: bytes) -> None:
        body = (fill * (size // len(fill) + 1))[:size]
        sent["hypothesis"] += 1
        response = http.post(path, content=_in_chunks(body, chunk))
        sent[f"hypothesis {response.status_code}"] += 1
        assert response.status_code == 413, response.text
        assert_error_body(response.status_code, response.content, f"chunked {size} B to {path}")
        assert response.json()["error"] == "payload_too_large"

    check()


# --- 3. an announced oversized body is refused unread ----------------------------------------


@pytest.mark.parametrize("length", [MAX_REQUEST_BYTES + 1, 50 * MAX_REQUEST_BYTES])
def test_content_length_over_1_mib_is_refused_unread(
    fuzz_gateway: GatewayProcess, length: int
) -> None:
    """Only the headers are sent: a 413 proves the gateway answered without reading the body."""
    url = urlsplit(fuzz_gateway.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/sessions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode()
        )
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 413"), received[:300]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {
        "error": "payload_too_large",
        "detail": f"The request body is larger than {MAX_REQUEST_BYTES} bytes.",
    }


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


# --- inputs found by the fuzzing -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "a://[",  # urlsplit: "Invalid IPv6 URL" (was a 500)
        "http://[::1",
        "http://[abc]/",  # urlsplit: not an IPv6 address (was a 500)
        "http://127.0.0.1:99999/",  # port out of range: accepted, then never postable
        "http://127.0.0.1:x/",
        # Accepted, then posting an ack raised httpx.InvalidURL, which killed a webhook worker.
        "http://127.0.0.1/\x00",
        "http://localhost/a\x7fb",
    ],
)
def test_webhook_urls_that_cannot_be_posted_to_are_a_400(http: httpx.Client, url: str) -> None:
    response = http.post("/api/sessions", json={"apiKey": "k", "webhookUrl": url})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_webhook_url",
        "detail": "webhookUrl must be an http(s) URL.",
    }


# --- the count -------------------------------------------------------------------------------


def test_generated_tests_sent_over_1000_requests(fuzz_gateway: GatewayProcess) -> None:
    """Runs last in this module: the generated tests above sent at least 1,000 requests, and
    the gateway took them all without a traceback in its log."""
    total = sent["schemathesis"] + sent["hypothesis"]
    print(f"generated requests: {total} {dict(sorted(sent.items()))}")
    assert sent["schemathesis"] > 0 and sent["hypothesis"] > 0, dict(sent)
    negative = sent["schemathesis coverage negative"] + sent["schemathesis fuzzing negative"]
    assert negative > 0, "schemathesis generated no invalid input"
    assert total >= MIN_REQUESTS, dict(sent)
    assert fuzz_gateway.alive()
    log = "\n".join(fuzz_gateway.output)
    assert "Traceback" not in log, log
