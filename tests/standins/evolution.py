"""A stand-in for Evolution API v2.3.6 (Baileys), for the requests a load test sends.

    python -m tests.standins.evolution [--port 0] [--api-key loadtest-global-key] [--paired]
        [--pair-delay-s 0.2] [--qrcode-delay-s 0.05] [--server-ack-ms 5] [--device-ack-ms 20]
        [--fail-ratio 0] [--expose-apikey] [--ws-trust-loopback]

As measured on the real one (../shared/gateways.md, tests/standins/test_agreement.py):
- header `apikey`: the global key, or an instance's own `hash` for that instance's routes (and
  for `fetchInstances`, which then lists that instance only); missing or wrong: 401, after the
  real one's other guards: an unknown instance is 404 and a name in use 403 whatever the key.
- `POST /instance/create {instanceName, integration, qrcode, webhook, websocket}` 201
  `{instance: {instanceName, instanceId, ..., status}, hash, webhook, ...}`; a name in use 403;
  `webhook` or `websocket` without `events` 400 (the real one reads `events.length`);
  `qrcode: true` answers after `--qrcode-delay-s` (5 s on the real one) and leaves it
  `connecting`, `qrcode: false` leaves it `close`. `--paired`: `open` after `--pair-delay-s`.
- `GET /instance/connectionState/{name}` `{instance: {instanceName, state}}`; 404 unknown.
- `GET /instance/fetchInstances`, `DELETE /instance/delete/{name}` 200, `DELETE
  /instance/logout/{name}` 400 unless open, `GET /instance/connect/{name}`.
- `POST /message/sendText/{name} {number, text}` 201 `{key: {remoteJid, fromMe, id}, status:
  "PENDING", ...}` when open, else 500 `{status, error, response: {message}}`: "Connection
  Closed" while connecting, Baileys' "Cannot read properties of undefined (reading
  'onWhatsApp')" on an instance that never connected (qrcode: false).
- acks: `messages.update` events, `data.keyId`, `data.status` SERVER_ACK, DELIVERY_ACK (ERROR
  for `--fail-ratio`), to `webhook.url` (`/messages-update` appended with `byEvents`) when the
  webhook lists MESSAGES_UPDATE (or nothing), and on socket.io namespace `/{instanceName}`
  when `websocket` lists that event (key as `apikey` query or header; the real one lets
  loopback clients in without it: `--ws-trust-loopback`). The namespace exists from the first
  event sent to it (socket.io's `of()`): subscribe to INSTANCE_CREATE to connect at once.
- `/metrics` with `evolution_instances_total`, `evolution_instance_up`, `evolution_instance_state`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import socketio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.standins.common import (
    ACK_DEVICE,
    ACK_ERROR,
    ACK_SERVER,
    OWN_NUMBER,
    Acks,
    Background,
    Record,
    Session,
    WebhookSender,
    answer,
    iso_now,
    json_object,
    lifespan_with,
    message_id,
    parse_flags,
    record_route,
    run,
    standin_parser,
)

VERSION = "2.3.6"
CLIENT_NAME = "evolution_local"
INTEGRATIONS = ("WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION")
ACK_STATUS = {ACK_ERROR: "ERROR", ACK_SERVER: "SERVER_ACK", ACK_DEVICE: "DELIVERY_ACK"}
NEVER_CONNECTED = "Cannot read properties of undefined (reading 'onWhatsApp')"
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
REASONS[500] = "Internal Server Error"


InstanceHandler = Callable[[Request, "Instance"], Awaitable[Response]]


def refusal(status_code: int, message: Any) -> Response:
    """Evolution's error body: `{status, error, response: {message}}`."""
    body = {"status": status_code, "error": REASONS[status_code], "response": {"message": message}}
    return answer(body, status_code)


def cuid() -> str:
    """An id shaped as Prisma's cuid() (the real one's database rows)."""
    return "c" + uuid.uuid4().hex[:24]


def without_sender_before_open(envelope: dict[str, Any]) -> dict[str, Any]:
    """`sender` is the instance's own JID, undefined (so absent) until it has connected."""
    if envelope["sender"] is None:
        del envelope["sender"]
    return envelope


def event_config(event: str) -> str:
    """`messages.update` -> `MESSAGES_UPDATE`, the name instances subscribe with."""
    return event.replace(".", "_").replace("-", "_").upper()


class Instance(Session):
    def __init__(self, name: str, body: dict[str, Any]) -> None:
        super().__init__(name, "close")
        self.instance_id = str(uuid.uuid4())
        self.token = body.get("token") or str(uuid.uuid4()).upper()
        self.integration = body["integration"]
        self.webhook = body.get("webhook") if isinstance(body.get("webhook"), dict) else None
        self.websocket = body.get("websocket") if isinstance(body.get("websocket"), dict) else None
        self.connected_once = False  # Baileys' socket exists once it has tried to connect
        self.created = iso_now()
        self.setting_id, self.websocket_id = cuid(), cuid()

    def subscribed(self, config: dict[str, Any] | None, event: str) -> bool:
        """The real one treats an empty event list as every event."""
        if config is None:
            return False
        events = config.get("events") or []
        return not events or event_config(event) in events

    def owner_jid(self) -> str | None:
        return f"{OWN_NUMBER}@s.whatsapp.net" if self.state == "open" else None

    def row_times(self) -> dict[str, str]:
        return {
            "createdAt": self.created,
            "updatedAt": self.created,
            "instanceId": self.instance_id,
        }

    def listed(self) -> dict[str, Any]:
        """One entry of `fetchInstances`."""
        return {
            "id": self.instance_id,
            "name": self.name,
            "connectionStatus": self.state,
            "ownerJid": self.owner_jid(),
            "profileName": None,
            "profilePicUrl": None,
            "integration": self.integration,
            "number": None,
            "businessId": None,
            "token": self.token,
            "clientName": CLIENT_NAME,
            "disconnectionReasonCode": None,
            "disconnectionObject": None,
            "disconnectionAt": None,
            "createdAt": self.created,
            "updatedAt": self.created,
            "Chatwoot": None,
            "Proxy": None,
            "Rabbitmq": None,
            "Nats": None,
            "Sqs": None,
            "Websocket": None
            if self.websocket is None
            else {
                "id": self.websocket_id,
                "enabled": True,  # whatever the request said, as the real one stores it
                "events": self.websocket.get("events") or ALL_EVENTS,
                **self.row_times(),
            },
            "Setting": {"id": self.setting_id, **SETTINGS, **self.row_times()},
            "_count": {"Message": 0, "Contact": 0, "Chat": 0},
        }


# What `events: []` subscribes to (the real one's EventController.events).
ALL_EVENTS = [
    "APPLICATION_STARTUP", "QRCODE_UPDATED", "MESSAGES_SET", "MESSAGES_UPSERT", "MESSAGES_EDITED",
    "MESSAGES_UPDATE", "MESSAGES_DELETE", "SEND_MESSAGE", "SEND_MESSAGE_UPDATE", "CONTACTS_SET",
    "CONTACTS_UPSERT", "CONTACTS_UPDATE", "PRESENCE_UPDATE", "CHATS_SET", "CHATS_UPSERT",
    "CHATS_UPDATE", "CHATS_DELETE", "GROUPS_UPSERT", "GROUP_UPDATE", "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE", "LABELS_EDIT", "LABELS_ASSOCIATION", "CALL", "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS", "REMOVE_INSTANCE", "LOGOUT_INSTANCE", "INSTANCE_CREATE",
    "INSTANCE_DELETE", "STATUS_INSTANCE",
]  # fmt: skip
SETTINGS = {
    "rejectCall": False,
    "msgCall": "",
    "groupsIgnore": False,
    "alwaysOnline": False,
    "readMessages": False,
    "readStatus": False,
    "syncFullHistory": False,
    "wavoipToken": "",
}


class Evolution:
    """The stand-in's state: instances by name, socket.io, webhooks, acks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.instances: dict[str, Instance] = {}
        self.record = Record("evolution", args.record_limit, lambda: list(self.instances))
        self.webhooks = WebhookSender(self.record)
        self.acks = Acks(args)
        self.server_url = args.url
        self.background = Background()
        self.sio = socketio.AsyncServer(
            async_mode="asgi", namespaces="*", cors_allowed_origins="*", logger=False
        )
        self.sio.on("connect", self.socket_connect, namespace="*")
        # socket.io (Node) makes a namespace on the first emit to it: before that, connecting
        # to `/{instance}` fails ("Invalid namespace"), also on the real one.
        self.namespaces = {"/"}

    async def socket_connect(
        self, namespace: str, sid: str, environ: dict[str, Any], auth: Any = None
    ) -> bool:
        if namespace not in self.namespaces:
            raise socketio.exceptions.ConnectionRefusedError("Invalid namespace")
        if self.args.ws_trust_loopback:
            return True
        query = parse_qs(environ.get("QUERY_STRING", ""))
        key = (query.get("apikey") or [None])[0] or environ.get("HTTP_APIKEY")
        known = key == self.args.api_key or any(i.token == key for i in self.instances.values())
        if not key or not known:
            raise socketio.exceptions.ConnectionRefusedError("Invalid global token")
        return True

    def emit(self, instance: Instance, event: str, data: Any) -> None:
        """An event as the real one sends it: webhook, then socket.io namespace."""
        apikey = instance.token if self.args.expose_apikey else None
        if instance.subscribed(instance.webhook, event) and instance.webhook.get("url"):
            url = instance.webhook["url"]
            if instance.webhook.get("byEvents"):
                url = f"{url.rstrip('/')}/{event.replace('.', '-').replace('_', '-')}"
            envelope = {
                "event": event,
                "instance": instance.name,
                "data": data,
                "destination": instance.webhook["url"],
                "date_time": iso_now(),
                "sender": instance.owner_jid(),
                "server_url": self.server_url,
                "apikey": apikey,
            }
            self.webhooks.post(url, without_sender_before_open(envelope))
        if instance.subscribed(instance.websocket, event):
            message = {
                "event": event,
                "instance": instance.name,
                "data": data,
                "server_url": self.server_url,
                "date_time": iso_now(),
                "sender": instance.owner_jid(),
                "apikey": apikey,
            }
            message = without_sender_before_open(message)
            self.namespaces.add(f"/{instance.name}")
            self.background.start(self.sio.emit(event, message, namespace=f"/{instance.name}"))

    def set_state(self, instance: Instance, state: str) -> None:
        instance.state = state
        instance.connected_once |= state != "close"
        data: dict[str, Any] = {"instance": instance.name}
        if state == "open":
            data.update(wuid=instance.owner_jid(), profileName="stand-in", profilePictureUrl=None)
        data.update(state=state, statusReason=200)
        self.emit(instance, "connection.update", data)

    def connect(self, instance: Instance) -> None:
        self.set_state(instance, "connecting")
        if self.args.paired:
            instance.later(self.args.pair_delay_s, self.set_state, instance, "open")

    def ack(self, instance: Instance, jid: str, key_id: str, row_id: str, level: int) -> None:
        data = {
            "keyId": key_id,
            "remoteJid": jid,
            "fromMe": True,
            "status": ACK_STATUS[level],
            "instanceId": instance.instance_id,
            "messageId": row_id,  # the message's row in the real one's database
        }
        self.emit(instance, "messages.update", data)


def create_app(args: argparse.Namespace) -> ASGIApp:
    evo = Evolution(args)

    def authorized(request: Request, instance_route: bool = True) -> bool:
        key = request.headers.get("apikey")
        if not key:
            return False
        if key == args.api_key:
            return True
        name = request.path_params.get("name")
        instance = evo.instances.get(name) if name is not None else None
        return instance_route and instance is not None and instance.token == key

    def on_instance(path: str, handler: InstanceHandler, method: str) -> Route:
        """A route of one instance, behind the real one's guards: exists (404), key (401)."""

        async def guarded(request: Request) -> Response:
            name = request.path_params["name"]
            instance = evo.instances.get(name)
            if instance is None:  # the real one checks this before the key
                return refusal(404, [f'The "{name}" instance does not exist'])
            if not authorized(request):
                return refusal(401, "Unauthorized")
            return await handler(request, instance)

        return Route(path, guarded, methods=[method])

    async def welcome(_: Request) -> Response:
        return answer(
            {
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": VERSION,
                "clientName": CLIENT_NAME,
                "manager": f"{evo.server_url}/manager",
                "documentation": "https://doc.evolution-api.com",
                "whatsappWebVersion": "2.3000.1027934701",
            }
        )

    async def create(request: Request) -> Response:
        body = await json_object(request)
        name = body.get("instanceName")
        # The real one's guards: a name in use (403) comes before the key (401); a missing
        # name is looked up as "undefined" and found.
        if not isinstance(name, str) or name in evo.instances:
            return refusal(403, [f'This name "{name if isinstance(name, str) else "undefined"}"'
                                 " is already in use."])  # fmt: skip
        if not authorized(request, instance_route=False):
            return refusal(401, "Unauthorized")
        if body.get("integration") not in INTEGRATIONS:
            return refusal(400, ["Invalid integration"])
        for channel in ("webhook", "websocket"):
            if isinstance(body.get(channel), dict) and not isinstance(
                body[channel].get("events"), list
            ):  # the real one reads `events.length`
                return refusal(400, ["Cannot read properties of undefined (reading 'length')"])
        instance = Instance(name, body)
        evo.instances[name] = instance
        evo.record.session_created()
        evo.emit(
            instance, "instance.create", {"instanceName": name, "instanceId": instance.instance_id}
        )
        if body.get("qrcode"):
            evo.connect(instance)
            await asyncio.sleep(args.qrcode_delay_s)  # the real one waits 5 s for a QR code
        elif args.paired:
            instance.later(args.pair_delay_s, evo.set_state, instance, "open")
        hook = instance.webhook or {}
        result: dict[str, Any] = {
            "instance": {
                "instanceName": name,
                "instanceId": instance.instance_id,
                "integration": instance.integration,
                "webhookWaBusiness": None,
                "accessTokenWaBusiness": "",
                # The real one reports the state before its connection attempt begins.
                "status": "close",
            },
            "hash": instance.token,
            "webhook": {
                key: value
                for key, value in (
                    ("webhookUrl", hook.get("url")),
                    ("webhookHeaders", hook.get("headers")),
                    ("webhookByEvents", hook.get("byEvents")),
                    ("webhookBase64", hook.get("base64")),
                )
                if value is not None  # undefined fields are absent from the real answer
            },
            "websocket": {}
            if instance.websocket is None or "enabled" not in instance.websocket
            else {"enabled": instance.websocket["enabled"]},
            "rabbitmq": {},
            "nats": {},
            "sqs": {},
            "settings": SETTINGS,
        }
        if body.get("qrcode"):
            result["qrcode"] = {"count": 0}
        return answer(result, 201)

    async def connection_state(request: Request, found: Instance) -> Response:
        return answer({"instance": {"instanceName": found.name, "state": found.state}})

    async def connect(request: Request, found: Instance) -> Response:
        if found.state == "open":
            return answer({"instance": {"instanceName": found.name, "state": "open"}})
        if found.state == "close":
            evo.connect(found)
        return answer({"count": 0})  # no QR code: offline, as the real one here

    async def fetch_instances(request: Request) -> Response:
        key = request.headers.get("apikey")
        wanted = request.query_params.get("instanceName")
        listed = [i for i in evo.instances.values() if wanted is None or i.name == wanted]
        if wanted is not None and not listed:
            return refusal(404, [f'Instance "{wanted}" not found'])
        if key and key == args.api_key:
            return answer([i.listed() for i in listed])
        own = [i.listed() for i in listed if key and i.token == key]
        return answer(own) if own else refusal(401, "Unauthorized")

    async def delete(request: Request, found: Instance) -> Response:
        found.alive = False
        del evo.instances[found.name]
        evo.record.session_deleted()
        return answer(
            {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
        )

    async def logout(request: Request, found: Instance) -> Response:
        if found.state != "open":
            return refusal(400, [f'The "{found.name}" instance is not connected'])
        found.cancel_timers()
        evo.set_state(found, "close")
        return answer(
            {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
        )

    async def send_text(request: Request, found: Instance) -> Response:
        body = await json_object(request)
        number, text = body.get("number"), body.get("text")
        fields = (("number", number), ("text", text))
        missing = [f'instance requires property "{f}"' for f, v in fields if not isinstance(v, str)]
        if missing:
            return refusal(400, [missing])  # a list in a list, as the real one
        if found.state != "open":
            evo.record.refusal(number)
            reason = "Connection Closed" if found.connected_once else NEVER_CONNECTED
            return refusal(500, reason)
        jid = number if "@" in number else f"{number}@s.whatsapp.net"
        key_id = message_id()
        evo.record.message(found.name, jid, key_id)
        row_id = cuid()
        evo.acks.schedule(found, lambda level: evo.ack(found, jid, key_id, row_id, level))
        message = {
            "key": {"remoteJid": jid, "fromMe": True, "id": key_id},
            "pushName": "Você",
            "status": "PENDING",
            "message": {"conversation": text},
            "contextInfo": None,
            "messageType": "conversation",
            "messageTimestamp": int(time.time()),
            "instanceId": found.instance_id,
            "source": "web",
        }
        evo.emit(found, "send.message", message)
        return answer(message, 201)

    async def metrics(_: Request) -> Response:
        lines = [
            "# HELP evolution_environment_info Environment information",
            "# TYPE evolution_environment_info gauge",
            f'evolution_environment_info{{version="{VERSION}",clientName="{CLIENT_NAME}",'
            f'serverUrl="{evo.server_url}"}} 1',
            "# HELP evolution_instances_total Total number of instances",
            "# TYPE evolution_instances_total gauge",
            f"evolution_instances_total {len(evo.instances)}",
            "# HELP evolution_instance_up 1 if instance state is open, else 0",
            "# TYPE evolution_instance_up gauge",
            "# HELP evolution_instance_state Instance state as a labelled metric",
            "# TYPE evolution_instance_state gauge",
        ]
        for i in evo.instances.values():
            labels = f'instance="{i.name}",integration="{i.integration}"'
            lines.append(f"evolution_instance_up{{{labels}}} {int(i.state == 'open')}")
            lines.append(f'evolution_instance_state{{{labels},state="{i.state}"}} 1')
        return PlainTextResponse("\n".join(lines) + "\n\n", media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, _: Exception) -> Response:
        return refusal(404, [f"Cannot {request.method} {request.url.path}"])

    app = Starlette(
        routes=[
            Route("/", welcome, methods=["GET"]),
            Route("/instance/create", create, methods=["POST"]),
            Route("/instance/fetchInstances", fetch_instances, methods=["GET"]),
            on_instance("/instance/connectionState/{name}", connection_state, "GET"),
            on_instance("/instance/connect/{name}", connect, "GET"),
            on_instance("/instance/delete/{name}", delete, "DELETE"),
            on_instance("/instance/logout/{name}", logout, "DELETE"),
            on_instance("/message/sendText/{name}", send_text, "POST"),
            Route("/metrics", metrics, methods=["GET"]),
            record_route(evo.record),
        ],
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan_with(evo.webhooks),
    )
    return socketio.ASGIApp(evo.sio, other_asgi_app=app)


def parser() -> argparse.ArgumentParser:
    p = standin_parser("evolution", __doc__)
    p.add_argument("--api-key", default="loadtest-global-key", help="the global key")
    p.add_argument(
        "--qrcode-delay-s", type=float, default=0.05,
        help="how long create with qrcode: true takes (the real one: 5)",
    )  # fmt: skip
    p.add_argument("--expose-apikey", action="store_true", help="the instance key in events")
    p.add_argument(
        "--ws-trust-loopback", action="store_true",
        help="as the real one: socket.io clients on loopback need no key",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    run(create_app, parse_flags(parser(), argv), "evolution")


if __name__ == "__main__":
    main()
