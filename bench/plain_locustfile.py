"""Plain Locust, the reference: the same webhook event in a closed loop, nothing else.

locust -f bench/plain_locustfile.py PlainFastHttpUser ...   (or PlainHttpUser)
BENCH_USER_RATE=50 locust -f bench/plain_locustfile.py PacedFastHttpUser ...

`PacedFastHttpUser` is the same request paced by Locust's own `constant_throughput`, each user
`BENCH_USER_RATE` requests/s: how a Locust user offers a fixed rate, the arrival engine's peer.
"""

import os

from locust import HttpUser, constant, constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

BODY = (
    '{"type":"message_create","timestamp":1700000000000,"message":{"id":"plain",'
    '"from":"5511900000000","to":"5511912345678","text":"Test message"}}'
)
HEADERS = {"Content-Type": "application/json"}


class PlainFastHttpUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def webhook(self) -> None:
        self.client.post("/api/webhook", data=BODY, headers=HEADERS)


class PlainHttpUser(HttpUser):
    wait_time = constant(0)

    @task
    def webhook(self) -> None:
        self.client.post("/api/webhook", data=BODY, headers=HEADERS)


class PacedFastHttpUser(PlainFastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("BENCH_USER_RATE", "1")))
