"""`python -m gateway` as a command: its --help, environment variables, bad input and SIGTERM.

Every test runs the real command in a child process; bad input must end with exit code 2 and
one line of explanation (or argparse's usage and error line), never a Python traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import websocket

from gateway.config import GatewayConfig
from gateway.process import PROJECT_ROOT, GatewayProcess

StartGateway = Callable[..., GatewayProcess]
USAGE_ERROR = 2


def clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without GATEWAY_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway ARGS` to completion (bounded: it is killed after 20 s)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=PROJECT_ROOT,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=20,
    )


# --- --help ------------------------------------------------------------------------------------


def help_blocks(text: str) -> dict[str, str]:
    """Option -> its help text (whitespace collapsed), from `--help` output."""
    blocks: dict[str, str] = {}
    for chunk in re.split(r"\n(?=  -)", text):
        match = re.match(r"  (-[\w-]+(?:, --[\w-]+)?)", chunk)
        if match:
            for option in match.group(1).split(", "):
                blocks[option] = " ".join(chunk.split())
    return blocks


def test_help_lists_every_setting_with_default_and_env_var() -> None:
    # A wide terminal, so that argparse does not break "--stall-every-s" at its hyphens.
    result = run_gateway("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    blocks = help_blocks(result.stdout)
    fields = dataclasses.fields(GatewayConfig)
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        assert flag in blocks, f"{flag} missing from --help"
        text = blocks[flag]
        assert f"(default: {f.default}; env GATEWAY_{f.name.upper()})" in text, text
        assert f.metadata["help"] in text, text
    # And nothing else: every switch is a setting (or --help itself).
    expected = {"--" + f.name.replace("_", "-") for f in fields} | {"-h", "--help"}
    assert set(blocks) == expected
    # The environment variable convention is stated once for all.
    assert "GATEWAY_<FLAG>" in result.stdout and "the flag wins" in result.stdout


# --- environment variables ---------------------------------------------------------------------


def webhook_event() -> dict[str, object]:
    return {
        "type": "message_create",
        "timestamp": int(time.time() * 1000),
        "message": {"id": uuid.uuid4().hex, "from": "5511900000001", "to": "5511900000002"},
    }


def test_environment_variables_are_honoured(start_gateway: StartGateway) -> None:
    gw = start_gateway(env=clean_env(GATEWAY_ERROR_RATE="1"))
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        for _ in range(10):
            for response in (
                http.post("/api/webhook", json=webhook_event()),
                http.post("/api/sessions", json={"apiKey": "env"}),
                http.get("/api/sessions/no-such-session"),
            ):
                assert response.status_code == 500
                assert response.json()["error"] == "injected_fault"
        assert http.get("/health").status_code == 200


def test_environment_variables_of_every_type(start_gateway: StartGateway) -> None:
    gw = start_gateway(
        env=clean_env(
            GATEWAY_REQUIRE_API_KEY="true",  # bool
            GATEWAY_MAX_SESSIONS="2",  # int
            GATEWAY_PAIRING_DELAY_S="0",  # float
            GATEWAY_LOG_LEVEL="ERROR",  # str
        )
    )
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        assert http.post("/api/webhook", json=webhook_event()).status_code == 401
        key = {"X-Api-Key": "env"}
        for _ in range(2):
            created = http.post("/api/sessions", json={"apiKey": "env"}, headers=key)
            assert created.status_code == 201
            assert created.json()["status"] == "ready"
        refused = http.post("/api/sessions", json={"apiKey": "env"}, headers=key)
        assert refused.status_code == 503
        assert refused.json()["error"] == "session_cap_reached"


def test_the_flag_wins_over_the_environment_variable(start_gateway: StartGateway) -> None:
    gw = start_gateway(
        "--error-rate", "0", "--max-sessions", "3", env=clean_env(GATEWAY_ERROR_RATE="1")
    )
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        for _ in range(20):
            assert http.post("/api/webhook", json=webhook_event()).status_code == 200
        assert http.get("/api/sessions/no-such-session").status_code == 404
    # The other way round too: the environment says 3 sessions, the flag says 1.
    gw = start_gateway("--max-sessions", "1", env=clean_env(GATEWAY_MAX_SESSIONS="3"))
    with httpx.Client(base_url=gw.url, timeout=5) as http:
        assert http.post("/api/sessions", json={"apiKey": "k"}).status_code == 201
        assert http.post("/api/sessions", json={"apiKey": "k"}).status_code == 503


# --- bad input ---------------------------------------------------------------------------------


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code 2, no traceback, one explanation; return the explanation."""
    assert result.returncode == USAGE_ERROR, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "listening" not in result.stdout, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines, "no explanation on stderr"
    if lines[0].startswith("gateway:"):
        assert len(lines) == 1, lines
        return lines[0]
    # argparse: the usage (possibly wrapped over several lines), then one error line.
    assert lines[0].startswith("usage: python -m gateway"), lines
    assert lines[-1].startswith("python -m gateway: error: "), lines
    assert sum("error:" in line for line in lines) == 1, lines
    return lines[-1]


BAD_INPUT = [
    pytest.param(["--error-rate", "2"], {}, "--error-rate must be between 0 and 1", id="rate>1"),
    pytest.param(["--port", "notanumber"], {}, "argument --port", id="port-not-int"),
    pytest.param(["--senders", "0"], {}, "--senders must be at least 1", id="senders=0"),
    pytest.param([], {"GATEWAY_RATE_LIMIT": "abc"}, "GATEWAY_RATE_LIMIT", id="env-not-float"),
    pytest.param(
        [], {"GATEWAY_REQUIRE_API_KEY": "maybe"}, "GATEWAY_REQUIRE_API_KEY", id="env-bool"
    ),
    pytest.param(["--port", "70000"], {}, "--port must be between 0 and 65535", id="port>65535"),
    pytest.param(["--latency-ms", "-5"], {}, "--latency-ms must not be negative", id="negative"),
    pytest.param(["--latency-ms", "nan"], {}, "--latency-ms must be a finite", id="nan"),
    pytest.param(["--stall-every-s", "inf"], {}, "--stall-every-s must be a finite", id="inf"),
    pytest.param(["--stall-ms", "5", "--stall-every-s", "0"], {}, "--stall-every-s", id="stall"),
    pytest.param(["--log-level", "bogus"], {}, "--log-level must be one of", id="log-level"),
    pytest.param(["--no-such-flag"], {}, "unrecognized arguments", id="unknown-flag"),
]


@pytest.mark.parametrize(("args", "env", "explanation"), BAD_INPUT)
def test_bad_input_is_a_one_line_usage_error(
    args: list[str], env: dict[str, str], explanation: str
) -> None:
    message = assert_usage_error(run_gateway("--port", "0", *args, env=env))
    assert explanation in message, message


def test_a_port_already_in_use_is_a_one_line_usage_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = assert_usage_error(run_gateway("--host", "127.0.0.1", "--port", str(port)))
    assert message == f"gateway: port {port} on 127.0.0.1 is already in use"


def test_a_second_gateway_on_the_same_port_is_refused(start_gateway: StartGateway) -> None:
    first = start_gateway()
    port = first.url.rsplit(":", 1)[1]
    message = assert_usage_error(run_gateway("--port", port))
    assert "already in use" in message
    assert first.alive() and httpx.get(first.url + "/health", timeout=5).status_code == 200


# --- SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_stops_the_gateway_within_seconds(start_gateway: StartGateway) -> None:
    # Something in every part of the gateway: a session with a subscriber, messages still in
    # the queue (sends take 10 s), and an idle keep-alive connection.
    gw = start_gateway(
        "--pairing-delay-s", "0", "--delivery-latency-ms", "10000", "--rate-limit", "0"
    )
    assert gw.proc is not None
    http = httpx.Client(base_url=gw.url, timeout=5)
    session_id = http.post("/api/sessions", json={"apiKey": "k"}).json()["sessionId"]
    ws = websocket.create_connection(
        gw.url.replace("http://", "ws://") + f"/api/sessions/{session_id}/events", timeout=5
    )
    try:
        for i in range(20):
            sent = http.post(
                f"/api/sessions/{session_id}/messages", json={"to": "5511987654321", "body": str(i)}
            )
            assert sent.status_code == 202
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        close_code = close_frame_code(ws)
        code = gw.proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        ws.close()
        http.close()
    print(
        f"\nSIGTERM: exit status {code} after {took * 1000:.0f} ms, WebSocket closed {close_code}"
    )
    # A graceful shutdown: subscribers are told "service restart" (1012) and the process ends,
    # with 0 or, as uvicorn does since 0.29, by re-raising the signal it handled.
    assert close_code == 1012
    assert code in (0, -signal.SIGTERM)
    assert took < 5
    assert "Traceback" not in "\n".join(gw.output)


def close_frame_code(ws: websocket.WebSocket) -> int:
    """Read frames until the server's close frame; return its status code."""
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big")
