"""Stand-ins for real WhatsApp gateways (WAHA core, Evolution API, wppconnect-server).

Small loopback servers that answer the requests a load test sends as the real gateways do
(paths, auth, status codes, nested JSON) and deliver acks the way each of them does (webhooks,
socket.io, WebSocket), for `make test` where the real ones cannot run. Each runs as
`python -m tests.standins.<kind> --port 0` and prints `<kind> stand-in listening on URL`;
`tests.standins.process.start_standin` starts one from a test. `GET /_standin/record` tells
what it did (sessions, messages and their recipients, webhooks).
"""

KINDS = ("waha", "evolution", "wppconnect")
