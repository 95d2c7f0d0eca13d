"""Plain Locust, the reference: the same webhook event in a closed loop, nothing else.

locust -f bench/plain_locustfile.py PlainFastHttpUser ...   (or PlainHttpUser)
"""

from locust import HttpUser, constant, task
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
