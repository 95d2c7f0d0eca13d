"""Plain Locust, the reference: a FastHttpUser posting the same webhook event in a closed loop."""

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

BODY = (
    '{"type":"message_create","timestamp":1700000000000,"message":{"id":"plain",'
    '"from":"5511900000000","to":"5511912345678","text":"Test message"}}'
)


class PlainWebhookUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def webhook(self) -> None:
        self.client.post("/api/webhook", data=BODY, headers={"Content-Type": "application/json"})
