"""The stand-ins against the real gateways: the same requests to both, the same answers.

Real WAHA core 2024.10.8 and Evolution API v2.3.6 (tests.realgw, in the namespace `realgw`)
and their stand-ins with default flags (unpaired), one sequence of requests per gateway:
create with a fixed name, the name in use, status, a send on the unpaired session (to
5511999999999 only, which nothing can deliver), wrong and missing keys, stop/delete, unknown
routes; and what each pushes meanwhile (webhooks, WAHA's WebSocket, Evolution's socket.io).
Compared: status codes, the JSON shape (keys, nesting, types) and values, but for fields that
differ by nature (VOLATILE: ids, keys, times, URLs with a port). Differences the stand-ins keep
on purpose are in KNOWN, reported and not failed. Run with `-s` to see the whole comparison.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import websocket
from prometheus_client.parser import text_string_to_metric_families

from gateway.process import PROJECT_ROOT
from tests.realgw import namespace
from tests.realgw.gateways import RealGateway
from tests.realgw.namespace import Answer
from tests.standins.process import StandinProcess
from tests.standins.receiver import Hook, WebhookReceiver

pytestmark = pytest.mark.real_gateway

NUMBER = "5511999999999"  # the only number sent to: the sessions are never paired here
VOLATILE = frozenset(
    {"id", "instanceId", "hash", "token", "createdAt", "updatedAt", "date_time",
     "messageTimestamp", "manager", "server_url", "timestamp", "uptime"}
)  # fmt: skip
# (gateway, step, path) -> why the stand-in differs there on purpose.
KNOWN: dict[tuple[str, str, str], str] = {
    ("evolution", "socket.io /agree-ws without key", "$.connected"): (
        "the real one lets loopback clients join without a key (ALLOWED_HOSTS); the stand-in"
        " asks for it unless --ws-trust-loopback, so a suite that forgets it fails here first"
    ),
    ("waha", "send (unpaired)", "elapsed"): (
        "the real one waits about 5 s for WORKING; the stand-in --not-ready-delay-s (0.05 s)"
    ),
}


@dataclass(frozen=True)
class Step:
    name: str
    method: str
    path: str
    body: Any = None
    keyed: bool = True  # send the gateway's key
    headers: Callable[[dict[str, Answer]], dict[str, str]] | dict[str, str] = field(
        default_factory=dict
    )
    pause_s: float = 0.0  # after it: the real Evolution removes a deleted instance later


@dataclass
class Comparison:
    gateway: str
    rows: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # step, real, stand-in, diff
    unexplained: list[str] = field(default_factory=list)

    def add(self, step: str, real: str, standin: str, diffs: list[tuple[str, str, str]]) -> None:
        if not diffs:
            self.rows.append((step, real, standin, "same"))
        for path, real_value, standin_value in diffs:
            reason = KNOWN.get((self.gateway, step, path))
            line = f"{path}: real {real_value}, stand-in {standin_value}"
            self.rows.append(
                (step, real, standin, line + (f" (known: {reason})" if reason else ""))
            )
            if reason is None:
                self.unexplained.append(f"{step}: {line}")

    def report(self) -> str:
        width = max(len(step) for step, *_ in self.rows)
        lines = [f"{self.gateway}: {len(self.rows)} comparisons"]
        lines += [f"  {s:<{width}}  {r:>4} {t:>4}  {d}" for s, r, t, d in self.rows]
        return "\n".join(lines)


# --- comparing answers -----------------------------------------------------------------------


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {str: "str", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def compare(real: Any, standin: Any, path: str = "$") -> Iterator[tuple[str, str, str]]:
    """(path, real, stand-in) where the two differ: a key present in one only, another type,
    another list length, or another value (VOLATILE keys: the type only)."""
    if isinstance(real, dict) and isinstance(standin, dict):
        for key in sorted(real.keys() | standin.keys()):
            where = f"{path}.{key}"
            if key not in standin or key not in real:
                yield (
                    where,
                    "present" if key in real else "absent",
                    "present" if key in standin else "absent",
                )
            elif key in VOLATILE:
                if type_name(real[key]) != type_name(standin[key]):
                    yield where, type_name(real[key]), type_name(standin[key])
            else:
                yield from compare(real[key], standin[key], where)
    elif isinstance(real, list) and isinstance(standin, list):
        real, standin = by_name(real), by_name(standin)
        if len(real) != len(standin):
            yield path, f"{len(real)} items", f"{len(standin)} items"
        for index, (a, b) in enumerate(zip(real, standin, strict=False)):
            yield from compare(a, b, f"{path}[{index}]")
    elif type_name(real) != type_name(standin):
        yield path, f"{type_name(real)} {short(real)}", f"{type_name(standin)} {short(standin)}"
    elif real != standin:
        yield path, short(real), short(standin)


def by_name(items: list[Any]) -> list[Any]:
    """Lists of named things sorted by name: their order is no contract (Evolution's
    fetchInstances has no ORDER BY: PostgreSQL's heap order, which updates reshuffle)."""
    if items and all(isinstance(item, dict) and "name" in item for item in items):
        return sorted(items, key=lambda item: str(item["name"]))
    return items


def short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 90 else text[:87] + "..."


def compare_answers(result: Comparison, step: str, real: Answer, standin: Answer) -> None:
    diffs: list[tuple[str, str, str]] = []
    if real.status != standin.status:
        diffs.append(("status", str(real.status), str(standin.status)))
    diffs += compare(real.body, standin.body)
    result.add(step, str(real.status), str(standin.status), diffs)


# --- driving both ----------------------------------------------------------------------------


def play(
    url: str, inside: bool, steps: list[Step], key: dict[str, str]
) -> dict[str, Answer]:  # fmt: skip
    answers: dict[str, Answer] = {}
    for step in steps:
        extra = step.headers(answers) if callable(step.headers) else step.headers
        headers = {**(key if step.keyed else {}), **extra}
        answers[step.name] = namespace.request(
            url, step.method, step.path, step.body, headers, inside=inside
        )
        time.sleep(step.pause_s)
    return answers


@contextlib.contextmanager
def twin_receivers() -> Iterator[tuple[WebhookReceiver, WebhookReceiver]]:
    """Webhook receivers for the real gateway (inside the namespace) and the stand-in (here)
    on the same port number, so both are given the very same webhook URL."""
    with WebhookReceiver() as here:
        port = int(here.url.rsplit(":", 1)[1])
        with WebhookReceiver(sock=namespace.bind_in_namespace(port=port)) as inside:
            yield inside, here


def compare_hooks(result: Comparison, real: list[Hook], standin: list[Hook]) -> None:
    """The first webhook of each (path, event) on each side, by shape and value."""

    def firsts(hooks: list[Hook]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for hook in hooks:
            kind = f"{hook.path} {hook.body.get('event')}"
            state = (hook.body.get("payload") or hook.body.get("data") or {}).get("status")
            seen.setdefault(f"{kind} {state}" if state else kind, hook.body)
        return seen

    real_first, standin_first = firsts(real), firsts(standin)
    result.add(
        "webhooks posted", str(len(real)), str(len(standin)),
        list(compare(sorted(real_first), sorted(standin_first), "kinds")),
    )  # fmt: skip
    for kind in sorted(real_first.keys() & standin_first.keys()):
        result.add(f"webhook {kind}", "", "", list(compare(real_first[kind], standin_first[kind])))


def finish(result: Comparison) -> None:
    print("\n" + result.report())
    assert not result.unexplained, "\n".join(result.unexplained)


# --- WAHA ------------------------------------------------------------------------------------


def waha_steps(hook_url: str) -> list[Step]:
    send = {"session": "default", "chatId": f"{NUMBER}@c.us", "text": "agreement test"}
    create = {
        "name": "default", "start": True,
        "config": {"webhooks": [{"url": hook_url, "events": ["message.ack", "session.status"]}]},
    }  # fmt: skip
    return [
        Step("ping", "GET", "/ping"),
        Step("list all (none)", "GET", "/api/sessions?all=true"),
        Step("create other name", "POST", "/api/sessions", {"name": "other", "start": True}),
        Step("create default", "POST", "/api/sessions", create),
        Step("create again", "POST", "/api/sessions", create),
        Step("status", "GET", "/api/sessions/default"),
        Step("list running", "GET", "/api/sessions"),
        Step("list all", "GET", "/api/sessions?all=true"),
        Step("wrong key", "GET", "/api/sessions/default", headers={"X-Api-Key": "wrong"}),
        Step("no key", "GET", "/api/sessions/default", keyed=False),
        Step("me (unpaired)", "GET", "/api/sessions/default/me"),
        Step("send (unpaired)", "POST", "/api/sendText", send),
        Step("send other session", "POST", "/api/sendText", {**send, "session": "other"}),
        Step("stop", "POST", "/api/sessions/default/stop"),
        Step("status stopped", "GET", "/api/sessions/default"),
        Step("send stopped", "POST", "/api/sendText", send),
        Step("delete", "DELETE", "/api/sessions/default", pause_s=0.3),
        Step("status deleted", "GET", "/api/sessions/default"),
        Step("delete again", "DELETE", "/api/sessions/default"),
        Step("metrics", "GET", "/metrics"),
        Step("health", "GET", "/health"),
        Step("unknown route", "GET", "/api/nope"),
    ]


def ws_connect(url: str, query: str, inside: bool) -> websocket.WebSocket:
    target = url.replace("http://", "ws://") + "/ws?" + query
    options: dict[str, Any] = {"timeout": 5}
    if inside:
        host, port = url.removeprefix("http://").split(":")
        options["socket"] = namespace.connect_in_namespace(host, int(port))
    return websocket.create_connection(target, **options)


def ws_refusal(url: str, query: str, inside: bool) -> dict[str, Any]:
    """How /ws closes a connection it refuses: code and reason."""
    ws = ws_connect(url, query, inside)
    try:
        opcode, frame = ws.recv_data_frame(True)[:2]
    finally:
        ws.close()
    if opcode != websocket.ABNF.OPCODE_CLOSE:
        return {"closed": False}
    code = int.from_bytes(frame.data[:2], "big")
    return {"closed": True, "code": code, "reason": json.loads(frame.data[2:] or "null")}


def ws_frames(ws: websocket.WebSocket, wait_s: float = 1.0) -> list[dict[str, Any]]:
    frames = []
    ws.settimeout(wait_s)
    with contextlib.suppress(websocket.WebSocketTimeoutException):
        while True:
            frames.append(json.loads(ws.recv()))
    return frames


def test_waha_standin_answers_as_the_real_one(
    waha_gateway: RealGateway, start_standin: Callable[..., StandinProcess]
) -> None:
    standin = start_standin("waha")
    key = {"X-Api-Key": waha_gateway.api_key}
    result = Comparison("waha")
    for query in ("session=*&events=message.ack", "session=default&events=session.status"):
        real = ws_refusal(waha_gateway.url, query, inside=True)
        result.add(
            f"ws refuses {query}",
            "",
            "",
            list(compare(real, ws_refusal(standin.url, query, False))),
        )
    with twin_receivers() as (real_hooks, standin_hooks):
        steps = waha_steps(real_hooks.url + "/waha")
        real_ws = ws_connect(waha_gateway.url, "session=*&events=session.status", inside=True)
        standin_ws = ws_connect(standin.url, "session=*&events=session.status", inside=False)
        try:
            real = play(waha_gateway.url, True, steps, key)
            standin_answers = play(standin.url, False, steps, key)
            real_frames, standin_frames = ws_frames(real_ws), ws_frames(standin_ws)
        finally:
            real_ws.close()
            standin_ws.close()
        real_posted = real_hooks.wait(lambda hooks: False, timeout_s=0.5)
        standin_posted = standin_hooks.wait(lambda hooks: False, timeout_s=0.5)
    for step in steps:
        compare_answers(result, step.name, real[step.name], standin_answers[step.name])
    slow = real["send (unpaired)"].elapsed_s
    result.add("send (unpaired)", "", "", [("elapsed", f"{slow:.1f} s",
               f"{standin_answers['send (unpaired)'].elapsed_s:.2f} s")])  # fmt: skip
    compare_hooks(result, real_posted, standin_posted)
    statuses = (distinct_statuses(real_frames), distinct_statuses(standin_frames))
    result.add("ws frames (statuses)", str(len(real_frames)), str(len(standin_frames)),
               list(compare(*statuses)))  # fmt: skip
    if real_frames and standin_frames:
        result.add("ws frame", "", "", list(compare(real_frames[0], standin_frames[0])))
    finish(result)


def distinct_statuses(envelopes: list[dict[str, Any]]) -> list[str]:
    """Statuses in order, repeats dropped: the real NOWEB engine says STARTING again on each
    reconnect attempt (no network here)."""
    statuses: list[str] = []
    for envelope in envelopes:
        status = envelope.get("payload", {}).get("status")
        if status not in statuses:
            statuses.append(status)
    return statuses


# --- Evolution API ---------------------------------------------------------------------------


def evolution_steps(hook_url: str) -> list[Step]:
    bad_key = {"apikey": "wrong-key"}
    base = {"integration": "WHATSAPP-BAILEYS", "qrcode": False}
    create = {
        "instanceName": "agree-1", **base,
        "webhook": {"url": hook_url, "byEvents": True, "base64": False,
                    "events": ["MESSAGES_UPDATE", "CONNECTION_UPDATE", "INSTANCE_CREATE"]},
    }  # fmt: skip
    with_socket = {
        "instanceName": "agree-ws", **base,
        "websocket": {"enabled": True, "events": ["MESSAGES_UPDATE", "INSTANCE_CREATE"]},
    }  # fmt: skip

    def own_key(answers: dict[str, Answer]) -> dict[str, str]:
        return {"apikey": answers["create"].body["hash"]}

    text = {"number": NUMBER, "text": "agreement test"}
    return [
        Step("welcome", "GET", "/"),
        Step("create without key", "POST", "/instance/create", create, keyed=False),
        Step("create wrong key", "POST", "/instance/create", create, headers=bad_key),
        Step("create", "POST", "/instance/create", create),
        Step("create name in use", "POST", "/instance/create", create),
        Step("name in use, no key", "POST", "/instance/create", create, keyed=False),
        Step("create without name", "POST", "/instance/create", base),
        Step("create bad integration", "POST", "/instance/create",
             {"instanceName": "agree-x", "integration": "NOPE"}),
        Step("create webhook without events", "POST", "/instance/create",
             {"instanceName": "agree-y", **base, "webhook": {"url": hook_url}}),
        Step("create with websocket", "POST", "/instance/create", with_socket),
        Step("state", "GET", "/instance/connectionState/agree-1"),
        Step("state, own key", "GET", "/instance/connectionState/agree-1", headers=own_key),
        Step("state, wrong key", "GET", "/instance/connectionState/agree-1", headers=bad_key),
        Step("state unknown", "GET", "/instance/connectionState/agree-none"),
        Step("state unknown, wrong key", "GET", "/instance/connectionState/agree-none",
             headers=bad_key),
        Step("fetchInstances", "GET", "/instance/fetchInstances"),
        Step("fetchInstances, own key", "GET", "/instance/fetchInstances", headers=own_key),
        Step("fetchInstances one", "GET", "/instance/fetchInstances?instanceName=agree-1"),
        Step("fetchInstances unknown", "GET", "/instance/fetchInstances?instanceName=agree-none"),
        Step("send (not connected)", "POST", "/message/sendText/agree-1", text),
        Step("send without text", "POST", "/message/sendText/agree-1", {"number": NUMBER}),
        Step("send unknown instance", "POST", "/message/sendText/agree-none", text),
        Step("logout (not connected)", "DELETE", "/instance/logout/agree-1"),
        Step("delete", "DELETE", "/instance/delete/agree-1", pause_s=1.0),
        Step("delete websocket one", "DELETE", "/instance/delete/agree-ws", pause_s=1.0),
        Step("state deleted", "GET", "/instance/connectionState/agree-1"),
        Step("fetchInstances (none)", "GET", "/instance/fetchInstances"),
        Step("unknown route", "GET", "/nope"),
    ]  # fmt: skip


def socketio_join(url: str, ns: str, apikey: str | None, gateway: RealGateway | None) -> Any:
    """Can a socket.io client join `ns`? Inside the namespace when `gateway` is given."""
    command = [
        sys.executable,
        "-m",
        "tests.realgw.socketio_probe",
        url,
        ns,
        *([apikey] if apikey else []),
    ]
    if gateway is not None:
        done = gateway.run(command, cwd=PROJECT_ROOT, timeout=30)
    else:
        done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30)
    return json.loads(done.stdout)


def metric_samples(text: str) -> dict[str, float]:
    """Sample name with its label names (values vary: instance names are the same) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(
                f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "serverUrl"
            )
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_evolution_standin_answers_as_the_real_one(
    evolution_gateway: RealGateway, start_standin: Callable[..., StandinProcess]
) -> None:
    standin = start_standin("evolution")
    key = {"apikey": evolution_gateway.api_key}
    result = Comparison("evolution")
    with twin_receivers() as (real_hooks, standin_hooks):
        steps = evolution_steps(real_hooks.url + "/hook")
        split = next(i for i, step in enumerate(steps) if step.name == "delete")
        real = play(evolution_gateway.url, True, steps[:split], key)
        standin_answers = play(standin.url, False, steps[:split], key)
        # While both instances exist: metrics, and who may join their socket.io namespaces.
        real_metrics = evolution_gateway.request("GET", "/metrics").body
        standin_metrics = namespace.request(
            standin.url, "GET", "/metrics", headers=key, inside=False
        ).body
        result.add(
            "metrics",
            "",
            "",
            list(compare(metric_samples(real_metrics), metric_samples(standin_metrics))),
        )
        for ns, apikey in (
            ("/agree-ws", key["apikey"]),
            ("/agree-1", key["apikey"]),
            ("/agree-ws", None),
        ):
            label = f"socket.io {ns} " + ("with key" if apikey else "without key")
            real_join = socketio_join(evolution_gateway.url, ns, apikey, evolution_gateway)
            standin_join = socketio_join(standin.url, ns, apikey, None)
            joined = [{"connected": join["connected"]} for join in (real_join, standin_join)]
            result.add(label, "", "", list(compare(*joined)))
        real.update(play(evolution_gateway.url, True, steps[split:], key))
        standin_answers.update(play(standin.url, False, steps[split:], key))
        real_posted = real_hooks.wait(lambda hooks: False, timeout_s=0.5)
        standin_posted = standin_hooks.wait(lambda hooks: False, timeout_s=0.5)
    for step in steps:
        compare_answers(result, step.name, real[step.name], standin_answers[step.name])
    compare_hooks(result, real_posted, standin_posted)
    finish(result)
