"""End to end: what a run refuses before any load, and phone numbers.

Bad usage is one line on stderr, exit code 2, nothing sent. Against a gateway that may reach
real phones, messages go only to the recipients given. Every run is bounded by a timeout.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    Run,
    free_port,
    locust_command,
    run_command,
    run_locust,
    strace_works,
)

USAGE_ERROR = 2
# Locust's own log lines ("[2026-...] host/INFO/locust.main: Starting Locust 2.47.0").
LOCUST_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \S+/[A-Z]+/locust[\w.]*: ")


# --- bad usage: one line, exit code 2, nothing sent ----------------------------------------


def check_usage_error(run: Run, *expected: str) -> str:
    """Exit code 2, no traceback, one `error:` line (beside Locust's own log lines), no run."""
    assert run.returncode == USAGE_ERROR, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    lines = run.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    others = [line for line in lines if line not in errors]
    assert all(LOCUST_LOG_LINE.match(line) for line in others), run.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert not run.report_dir.exists(), "a run folder was written"
    return errors[0]


def test_unknown_scenario_is_a_usage_error(tmp_path):
    run = run_locust("no-such-scenario", tmp_path / "run", host="http://127.0.0.1:9")
    check_usage_error(run, "unknown scenario 'no-such-scenario'", "sessions")


def test_negative_time_scale_is_a_usage_error(tmp_path):
    run = run_locust("sessions", tmp_path / "run", time_scale=-1, host="http://127.0.0.1:9")
    check_usage_error(run, "--time-scale")


def test_remote_target_is_refused_before_any_traffic(tmp_path):
    remote = "http://10.1.2.3:3000"
    trace = tmp_path / "connect.trace"
    # Under strace where it works: the proof that no connect() ever went to the remote address.
    strace = strace_works()
    prefix = ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace)] if strace else []
    command = [*prefix, *locust_command("sessions", tmp_path / "run", host=remote)]
    run = run_command(command, tmp_path / "run", timeout=60)
    check_usage_error(run, "10.1.2.3", "not on loopback", "--allow-remote")
    assert "unreachable" not in run.stderr  # refused by the rule, not by a failed connection
    if strace:
        assert "10.1.2.3" not in trace.read_text(), "the remote address was contacted"


def test_a_scenario_needing_a_request_the_profile_lacks_is_refused(tmp_path):
    """The webhooks scenario against WAHA, which has no inbound webhook endpoint: refused
    before anything is sent (the target here is not even there)."""
    waha = ("--target-profile", "waha", "--api-key", "k")
    run = run_locust("webhooks", tmp_path / "run", *waha, host="http://127.0.0.1:9")
    check_usage_error(run, "WebhookSender sends the 'webhook' request", "'waha'")
    run = run_locust("sessions", tmp_path / "run", *waha, host="http://127.0.0.1:9")
    check_usage_error(run, "unreachable")  # the sessions scenario needs no webhook: on it goes


def test_what_a_profile_needs_from_the_user_is_asked_for_in_one_line(tmp_path):
    """A global key, a profile variable: refused before anything is sent, naming the option."""
    host = "http://127.0.0.1:9"
    run = run_locust("sessions", tmp_path / "run", "--target-profile", "evolution", host=host)
    check_usage_error(run, "'evolution' needs the gateway's key (header apikey)", "--api-key")
    run = run_locust("sessions", tmp_path / "run", "--target-profile", "wppconnect", host=host)
    check_usage_error(run, "needs secret_key", "--profile-var secret_key=VALUE")
    run = run_locust(
        "sessions", tmp_path / "run", "--target-profile", "wppconnect",
        "--profile-var", "secret=x", host=host,
    )  # fmt: skip
    check_usage_error(run, "--profile-var secret: ", "has no such variable (it has: secret_key)")


def test_node_inspector_options_are_checked_before_any_load(gateway, tmp_path):
    """`--node-inspect` takes a loopback inspector that is there; its recordings need it."""
    host = gateway.url
    run = run_locust("sessions", tmp_path / "run", "--cpu-profile", host=host)
    check_usage_error(run, "--cpu-profile and --heap-snapshots need --node-inspect HOST:PORT")
    run = run_locust("sessions", tmp_path / "run", "--node-inspect", "10.1.2.3:9229", host=host)
    check_usage_error(run, "not a loopback address", "--allow-remote")
    port = free_port()
    run = run_locust("sessions", tmp_path / "run", "--node-inspect", f"127.0.0.1:{port}", host=host)
    check_usage_error(run, f"no Node inspector at 127.0.0.1:{port}", "node --inspect=")
    inspect = ("--node-inspect", f"127.0.0.1:{port}", "--cpu-profile", "120:60")
    run = run_locust("sessions", tmp_path / "run", *inspect, host=host)
    check_usage_error(run, "--cpu-profile '120:60': expected FROM:TO")


def test_unreachable_loopback_target_is_a_usage_error(tmp_path):
    port = free_port()
    run = run_locust("sessions", tmp_path / "run", host=f"http://127.0.0.1:{port}")
    check_usage_error(run, f"127.0.0.1:{port}", "unreachable")


# --- phone numbers: never made up for a gateway that may reach real phones ------------------


class NumberRecorder:
    """A stand-in of the plan's API on loopback that records every number it is sent: sessions
    are ready at once, sends are accepted (202), nothing else is there (no events socket)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the users' clients expect

            def log_message(self, *_: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.endswith("/events"):
                    self.answer(404)  # no events socket
                elif self.path.startswith("/api/sessions/"):
                    self.answer(200, {"status": "ready"})
                else:
                    self.answer(200 if self.path == "/health" else 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                recorder.posts.append((self.path, body))
                if self.path == "/api/sessions":
                    self.answer(201, {"sessionId": f"s{len(recorder.posts)}"})
                else:
                    self.answer(202, {"messageId": f"m{len(recorder.posts)}"})

            def do_DELETE(self) -> None:
                self.answer(200)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # 5 by default: senders connecting at once overflow it

            def handle_error(self, *_: Any) -> None:
                pass  # a client gone at the end of the run: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def numbers(self) -> list[str]:
        return [body["to"] for path, body in self.posts if path.endswith("/messages")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[NumberRecorder]:
    server = NumberRecorder()
    yield server
    server.close()


def test_messages_to_a_real_gateway_without_recipients_are_refused(recorder, tmp_path, monkeypatch):
    monkeypatch.delenv("SUITE_SYNTHETIC_NUMBERS")  # the tests' own allowance, taken away
    run = run_locust("messages", tmp_path / "run", host=recorder.url)
    check_usage_error(run, "--recipients", "real phones", "--synthetic-numbers")
    assert recorder.posts == [], recorder.posts  # no session, no message: nothing sent


def test_messages_go_only_to_the_recipients_given(recorder, tmp_path, monkeypatch):
    monkeypatch.delenv("SUITE_SYNTHETIC_NUMBERS")
    mine = ("5511999990001", "5511999990002", "5511999990003")
    run = run_locust(
        "messages", tmp_path / "run", "--recipients", ",".join(mine), host=recorder.url
    )
    assert run.returncode != USAGE_ERROR and "Traceback" not in run.stderr, run.explain()
    sent = recorder.numbers()
    assert len(sent) >= 100, len(sent)  # of the plan's 10 sessions x 50 messages
    assert set(sent) == set(mine)  # only those, and spread over all of them
    numbers = run.summary["numbers"]
    assert numbers == {
        "needed": True,
        "recipients": 3,
        "synthetic": False,
        "synthetic_asked": False,
    }
    for name in ("summary.json", "report.json", "report.md", "report.html"):
        text = (run.report_dir / name).read_text(encoding="utf-8")
        assert not any(number in text for number in mine), name  # counted, never written
    assert not any("made-up phone numbers" in note for note in run.report["notes"])


def test_made_up_numbers_for_a_gateway_of_ones_own_are_said_in_the_report(recorder, tmp_path):
    # The tests' SUITE_SYNTHETIC_NUMBERS=1 stands for --synthetic-numbers here.
    run = run_locust("messages", tmp_path / "run", host=recorder.url)
    assert run.returncode != USAGE_ERROR, run.explain()
    assert all(number.startswith("55119") for number in recorder.numbers())
    assert run.summary["numbers"]["synthetic"] and run.summary["numbers"]["synthetic_asked"]
    notes = [n for n in run.report["notes"] if "made-up phone numbers" in n]
    assert notes and "--synthetic-numbers" in notes[0], run.report["notes"]
